// The guardian: a child process that aborts a mount's FUSE connection when
// the mailfs process serving it is dying but cannot finish.
//
// Why it exists: the kernel aborts a FUSE connection when the last
// descriptor of /dev/fuse for it is released, that is when the daemon's
// last thread has exited. A mailfs killed (SIGKILL) while its notifier
// thread is inside fuse_lowlevel_notify_inval_entry never gets there: in
// the kernel that thread waits, uninterruptibly, for a directory's inode
// lock, and the lock is held by a rename() into the same mount that waits
// for mailfs's answer. The process stays a zombie with that one thread, its
// descriptors stay open, the connection is never aborted, and the rename
// (an `mv` burst into the mount) hangs for good; neither `fusermount3 -u -z`
// nor killing the `mv` ends it. Writing 1 to the connection's fusectl abort
// file does: the rename fails with ENOTCONN, frees the lock, and the last
// thread exits.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace mailfs {

// /sys/fs/fuse/connections/<minor>/abort for the FUSE mount with device
// `device`; mounts fusectl at /sys/fs/fuse/connections first when that
// connection is not there (a container may not have it mounted).
std::string FusectlAbortFile(dev_t device);

// Forks the guardian of the mount this process serves: device `device`,
// mounted at `mountinfo_point` (spelled as in /proc/self/mountinfo, see
// MountinfoEscape). Returns its pid, or -1 with errno set when fork fails.
// The caller reaps it with StopGuardian; anything that reaps children it
// did not start (waitpid(-1)) must not run in the same process.
//
// The guardian holds no descriptor (0, 1 and 2 are /dev/null: a copy of
// the FUSE descriptor would keep the connection alive by itself, a copy of
// a pipe would keep a reader of the daemon's output waiting), ignores
// SIGINT, SIGTERM and SIGHUP (Ctrl-C reaches the whole process group; the
// daemon unmounts and stops the guardian), and every 250 ms:
//  - exits when this process is gone (its parent changed);
//  - when this process's main thread is a zombie (the process is exiting
//    but a thread is left: mailfs's main thread never calls pthread_exit)
//    and the mount is still there with the same device (not a later mount
//    that got the same minor), writes 1 to the connection's abort file.
// It may be called while other threads run: after fork the child makes
// only async-signal-safe calls.
pid_t StartGuardian(dev_t device, std::string_view mountinfo_point);

// SIGKILLs the guardian `pid` and reaps it; nothing for pid <= 0.
void StopGuardian(pid_t pid);

// A path as /proc/self/mountinfo writes it: ' ', '\t', '\n' and '\\' as
// octal escapes ("/tmp/my mail" is "/tmp/my\040mail").
std::string MountinfoEscape(std::string_view path);

}  // namespace mailfs
