# Virtual A/B COW images on /data, sourced by init.sh after the postinstall steps (its step
# helper; vm_images). run.sh
# put an empty ext4 file system in /data/vabdata/userdata.img (made on the host by
# mkfs.ext4). It is attached to a loop device and mounted, as /data is on a device; files are
# of 512 KiB written until it is full and every other one deleted, so that the free space is
# fragmented; then
# `vm_images cow-image` makes a COW image on it as the updater does (libfiemap's way:
# fallocate, zeros, fsync, FIEMAP extents recorded in lp_metadata) and writes sample bytes
# through the file. With the file system unmounted (first-stage init maps the images before
# /data is mounted), the extents recorded in lp_metadata are mapped with dm-linear over the
# loop device: the mapping reads back exactly the bytes written through the file.

VAB_DATA=/data/vabdata

vab_data_image_extents() {
    # ext4 comes with the postinstall steps (pi-modules), run before these; alone (ONLY=),
    # it is loaded here.
    if ! grep -q ext4 /proc/filesystems; then
        for m in crc32c_generic libcrc32c crc16 mbcache jbd2 ext4; do
            insmod "/lib/modules/$m.ko" || return 1
        done
    fi
    mkdir -p /tmp/vab-links
    t0=$(date +%s)
    ud=$(losetup -f) && losetup "$ud" "$VAB_DATA/userdata.img" || return 1
    mkdir -p /mnt/userdata /tmp/vab-meta
    mount -t ext4 "$ud" /mnt/userdata || return 1
    # Fragment the free space: the file system filled with 512 KiB files, then every other
    # one removed, so that the image can only take the holes between the rest.
    mkdir -p /mnt/userdata/fill
    i=0
    while [ $i -lt 400 ] &&
        dd if=/dev/zero of=/mnt/userdata/fill/$i bs=512k count=1 2>/dev/null; do
        i=$((i + 1))
    done
    sync
    echo "filled with $i files of 512 KiB in $(($(date +%s) - t0))s"
    j=0
    while [ $j -le $i ]; do
        rm -f /mnt/userdata/fill/$j
        j=$((j + 2))
    done
    sync
    size=$((1024 * 1024 + 512))
    vm_images cow-image /mnt/userdata /tmp/vab-meta system_b-cow-img $size > /tmp/vab-img.out ||
        { umount /mnt/userdata; return 1; }
    echo "image made and written at $(($(date +%s) - t0))s"
    want=$(sed -n 1p /tmp/vab-img.out)
    targets=$(sed -n 2p /tmp/vab-img.out)
    file_sum=$(head -c $size /mnt/userdata/gsi/ota/system_b-cow-img.img | sha256sum | cut -d' ' -f1)
    umount /mnt/userdata || return 1
    echo "extents: $targets"
    echo "$targets" | grep -q "/dev/$(basename "$ud"):" || return 1
    count=$(echo "$targets" | wc -w)
    echo "$count extents on $(basename "$ud") for $size bytes"
    # shellcheck disable=SC2086
    node=$(vm_images dm-map vab_cow_img /tmp/vab-links $targets) || return 1
    got=$(head -c $size "$node" | sha256sum | cut -d' ' -f1)
    echo "written: $want, through the file: $file_sum, through dm-linear: $got"
    vm_images dm-remove /tmp/vab-links vab_cow_img || return 1
    losetup -d "$ud"
    echo "took $(($(date +%s) - t0))s"
    [ "$count" -gt 1 ] && [ "$got" = "$want" ] && [ "$file_sum" = "$want" ]
}

run_vab_data_steps() {
    step vab-data-image-extents vab_data_image_extents
}
