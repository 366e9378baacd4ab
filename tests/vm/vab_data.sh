# Virtual A/B COW images on /data, sourced by init.sh after the postinstall steps (its step
# helper; vm_images). run.sh put an empty ext4 file system in /data/vabdata/userdata.img (made
# on the host by mkfs.ext4); the f2fs one is made here by mkfs.f2fs (64 MiB, f2fs's smallest
# comfortable size, which the initramfs need not carry). Each is attached to a loop device and
# mounted, as /data is on a device; files of 512 KiB are written until it is full and every
# other one deleted, so that the free space is fragmented; then `vm_images cow-image` makes a
# COW image on it as the updater does (libfiemap's way: on ext4 fallocate, zeros, fsync; on
# f2fs the file pinned first, then fallocate; FIEMAP extents recorded in lp_metadata) and
# writes sample bytes through the file. On f2fs the image must be pinned (FS_NOCOW_FL, no
# block moved: F2FS_IOC_GET_PIN_FILE), or the garbage collector could move its blocks away
# from the recorded extents. With the file system unmounted (first-stage init maps the images
# before /data is mounted), the extents recorded in lp_metadata are mapped with dm-linear over
# the loop device: the mapping reads back exactly the bytes written through the file.

VAB_DATA=/data/vabdata

# $1: ext4 or f2fs.
vab_data_image_extents() {
    fs=$1
    # ext4 comes with the postinstall steps (pi-modules), run before these; alone (ONLY=),
    # it is loaded here.
    if [ "$fs" = ext4 ] && ! grep -q ext4 /proc/filesystems; then
        for m in crc32c_generic libcrc32c crc16 mbcache jbd2 ext4; do
            insmod "/lib/modules/$m.ko" || return 1
        done
    fi
    if [ "$fs" = f2fs ] && ! grep -q f2fs /proc/filesystems; then
        # f2fs asks the crypto API for "crc32".
        for m in crc32_generic zstd_compress lz4_compress lz4hc_compress f2fs; do
            insmod "/lib/modules/$m.ko" || return 1
        done
    fi
    mkdir -p /tmp/vab-links
    t0=$(date +%s)
    img=$VAB_DATA/userdata.img
    if [ "$fs" = f2fs ]; then
        img=/tmp/userdata-f2fs.img
        truncate -s 64M "$img" && mkfs.f2fs -q -f "$img" > /tmp/mkfs.f2fs.log 2>&1 ||
            { cat /tmp/mkfs.f2fs.log; return 1; }
    fi
    ud=$(losetup -f) && losetup "$ud" "$img" || return 1
    rm -rf /tmp/vab-meta
    mkdir -p /mnt/userdata /tmp/vab-meta
    mount -t "$fs" "$ud" /mnt/userdata || { dmesg | tail -5; return 1; }
    [ "$fs" = f2fs ] && echo "f2fs features: $(cat "/sys/fs/f2fs/$(basename "$ud")/features")"
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
    pinned=$(sed -n 3p /tmp/vab-img.out)
    echo "$pinned"
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
    [ "$got" = "$want" ] && [ "$file_sum" = "$want" ] || return 1
    # ext4 fills the holes (more than one extent); f2fs gives a pinned file whole free
    # sections, so one extent is what it should get there.
    case $fs in
        f2fs) [ "$count" -ge 1 ] && [ "$pinned" = "pinned: yes" ] ;;
        *) [ "$count" -gt 1 ] && [ "$pinned" = "pinned: not f2fs" ] ;;
    esac
}

run_vab_data_steps() {
    step vab-data-image-extents vab_data_image_extents ext4
    step vab-data-image-f2fs vab_data_image_extents f2fs
}
