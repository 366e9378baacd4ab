/*
 * Copyright 2026 The abupdate Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * Runnable in-process stand-in for the Android class of the same name, for the client test
 * on a JVM: it does what an in-process Binder does (a local interface, death recipients) and
 * nothing else. Methods without an SDK counterpart are marked "test only".
 */

package android.os;

import java.util.ArrayList;
import java.util.List;

public class Binder implements IBinder {
    private IInterface mOwner;
    private String mDescriptor;
    private final List<DeathRecipient> mRecipients = new ArrayList<>();
    private boolean mDead;

    public Binder() {}

    public void attachInterface(IInterface owner, String descriptor) {
        mOwner = owner;
        mDescriptor = descriptor;
    }

    @Override
    public IInterface queryLocalInterface(String descriptor) {
        return descriptor.equals(mDescriptor) ? mOwner : null;
    }

    @Override
    public final boolean transact(int code, Parcel data, Parcel reply, int flags)
            throws RemoteException {
        throw new UnsupportedOperationException("in-process stand-in: no transactions");
    }

    protected boolean onTransact(int code, Parcel data, Parcel reply, int flags)
            throws RemoteException {
        throw new UnsupportedOperationException("in-process stand-in: no transactions");
    }

    @Override
    public synchronized void linkToDeath(DeathRecipient recipient, int flags)
            throws RemoteException {
        if (mDead) {
            throw new RemoteException("dead object");
        }
        mRecipients.add(recipient);
    }

    @Override
    public synchronized boolean unlinkToDeath(DeathRecipient recipient, int flags) {
        return mRecipients.remove(recipient);
    }

    /** Test only: the process holding this object died; its recipients are told. */
    public void simulateDeath() {
        List<DeathRecipient> told;
        synchronized (this) {
            mDead = true;
            told = new ArrayList<>(mRecipients);
            mRecipients.clear();
        }
        for (DeathRecipient r : told) {
            r.binderDied();
        }
    }
}
