// Mounting a MailboxSet: the driver's public face for main and for tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "src/mailbox.h"
#include "src/status.h"

namespace mailfs {

struct MountOptions {
  // Where files being written wait for their close. Empty: a private
  // directory created under /var/tmp and removed at unmount.
  std::string spool_dir;
  // How long the kernel may trust names and attributes; the driver
  // invalidates them when the change feed reports a change.
  double entry_timeout_seconds = 60.0;
  double attr_timeout_seconds = 60.0;
  // How long the kernel may remember that a name does not exist (names
  // that cannot be a message's canonical name only; see Driver::Lookup).
  double negative_timeout_seconds = 1.0;
  // Worker threads of the FUSE session loop.
  unsigned max_threads = 16;
  // Log every request (FUSE -d).
  bool debug = false;
  // Detach from the terminal after mounting (fuse_daemonize), as a mount
  // helper must; errors found before that still reach the caller.
  bool daemonize = false;
  // Unmount cleanly on SIGINT/SIGTERM/SIGHUP (for the command line; a
  // process holds one such mount at most).
  bool handle_signals = false;
  // Extra FUSE mount options ("-o allow_other" and such), passed through.
  std::vector<std::string> fuse_args;
};

// A mounted filesystem serving requests on background threads.
// Not copyable; Unmount (or the destructor) unmounts and joins the threads.
// Each mount also forks a small child process, its guardian
// (fuse/guardian.h), and reaps it at unmount: a process that holds a Mount
// must not reap children it did not start (waitpid(-1)).
class Mount {
 public:
  // Mounts `store` at `mountpoint` (an existing empty directory) and starts
  // serving. Fails without leaving anything mounted.
  static Result<std::unique_ptr<Mount>> Start(std::shared_ptr<MailboxSet> store,
                                              const std::string& mountpoint,
                                              const MountOptions& options);
  virtual ~Mount() = default;
  // Unmounts and waits for the worker and notifier threads. Idempotent.
  virtual void Unmount() = 0;
  // Blocks until the filesystem is unmounted from outside (fusermount3 -u)
  // or Unmount is called. Returns 0 on a clean exit.
  virtual int Wait() = 0;
  virtual const std::string& mountpoint() const = 0;
};

}  // namespace mailfs
