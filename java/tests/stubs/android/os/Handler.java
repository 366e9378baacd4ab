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

/** A message queue on virtual time that the test runs by hand, on its own thread. */
public class Handler {
    private static final class Message {
        final Runnable what;
        final long when;

        Message(Runnable what, long when) {
            this.what = what;
            this.when = when;
        }
    }

    private final List<Message> mQueue = new ArrayList<>();
    private long mNow;

    public Handler() {}

    public final synchronized boolean post(Runnable r) {
        mQueue.add(new Message(r, mNow));
        return true;
    }

    public final synchronized boolean postDelayed(Runnable r, long delayMillis) {
        mQueue.add(new Message(r, mNow + delayMillis));
        return true;
    }

    /** Test only: moves time on by {@code millis} and runs every message due, in order. */
    public void advance(long millis) {
        long until;
        synchronized (this) {
            until = mNow + millis;
        }
        while (true) {
            Message next = null;
            synchronized (this) {
                for (Message m : mQueue) {
                    if (m.when <= until && (next == null || m.when < next.when)) {
                        next = m;
                    }
                }
                if (next == null) {
                    mNow = until;
                    return;
                }
                mQueue.remove(next);
                mNow = Math.max(mNow, next.when);
            }
            next.what.run();
        }
    }

    /** Test only: messages waiting. */
    public synchronized int pending() {
        return mQueue.size();
    }
}
