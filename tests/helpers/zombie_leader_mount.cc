// zombie_leader_mount MOUNTPOINT: mounts the demo store at MOUNTPOINT
// through Mount::Start, as mailfs does, and serves it. On SIGUSR1 its main
// thread ends (pthread_exit) while the FUSE threads go on serving: the
// process is then what a SIGKILLed mailfs is while one of its threads is
// stuck in a reverse invalidation (fuse/guardian.h): its main thread a
// zombie, a thread alive, /dev/fuse still open. tests/cli/guardian_test.cc
// checks that the mount's guardian aborts the connection then.
#include <pthread.h>
#include <signal.h>

#include <cstdio>

#include "backends/dict/dict_backend.h"
#include "fuse/mount.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: zombie_leader_mount MOUNTPOINT\n");
    return 2;
  }
  // Blocked before the FUSE threads start, which inherit the mask: only
  // the sigwait below takes it.
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
  auto mount = mailfs::Mount::Start(mailfs::NewDemoMailboxSet(), argv[1], {});
  if (!mount.ok()) {
    std::fprintf(stderr, "%s\n", mount.status().ToString().c_str());
    return 1;
  }
  // Never destroyed: pthread_exit unwinds the stack, and the Mount's
  // destructor would unmount cleanly.
  [[maybe_unused]] mailfs::Mount* serving = std::move(mount).value().release();
  int sig = 0;
  sigwait(&usr1, &sig);
  pthread_exit(nullptr);
}
