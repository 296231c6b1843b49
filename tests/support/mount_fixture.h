// The mount test harness: real FUSE mounts of a store in temporary
// directories, a shell runner for the tools users use, helpers that make a
// syscall and report its errno, and a digest of a whole store so that a
// test can prove a refused operation left the store exactly as it was.
//
// Every mount lives under /tmp/mailfs-test-XXXXXX and is unmounted and
// removed when its MountedStore goes away, also when the test failed. A
// missing /dev/fuse or a mount that does not start is a test failure, never
// a skip. A watchdog aborts a test that hangs (a deadlocked mount) after
// detaching its mounts, so CI fails instead of hanging.
//
// Everything here runs in the test process, which also serves the mount on
// the driver's background threads: syscalls from the test thread to the
// mount are fine. Commands run through posix_spawn (never fork+system), and
// every descriptor the tests open is close-on-exec, so a child never holds a
// file being written (its exit would flush it early).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "fuse/mount.h"
#include "src/flags.h"
#include "src/mailbox.h"
#include "src/message.h"
#include "src/status.h"
#include "tests/support/test_util.h"

namespace mailfs::test {

inline constexpr std::string_view kTempPrefix = "/tmp/mailfs-test-";

// ---------------------------------------------------------------------------
// Backends the mount tests run over.

// One backend as the mount tests see it (built from the backend factories,
// tests/support/backend_factories.h, when they exist).
struct MountBackend {
  std::string name;                                   // "dict", "maildir", "redis"
  std::function<std::shared_ptr<MailboxSet>()> make;  // a new, empty store (INBOX only)
  // Marks a mailbox of a store made by `make` read-only.
  std::function<Status(MailboxSet&, std::string_view)> make_readonly;
};
void PrintTo(const MountBackend& backend, std::ostream* os);
std::vector<MountBackend> MountBackends();
// For INSTANTIATE_TEST_SUITE_P(..., ValuesIn(MountBackends()), MountBackendName).
std::string MountBackendName(const ::testing::TestParamInfo<MountBackend>& info);

// ---------------------------------------------------------------------------
// Running commands.

struct CommandResult {
  int exit_code = -1;  // the exit status, or 128+signal when killed
  bool timed_out = false;
  std::string out;
  std::string err;
  bool ok() const { return exit_code == 0 && !timed_out; }
  // "exit 1, stderr: ..." for failure messages.
  std::string Describe() const;
};

inline constexpr std::chrono::seconds kCommandTimeout{30};

// How SpawnProcess starts a child. (The {} on the members lets a
// designated initializer leave them out without
// -Wmissing-field-initializers.)
struct SpawnOptions {
  // Where the child's stdout and stderr go (one descriptor may serve both;
  // close-on-exec is fine, the child's copy does not inherit it); -1 for
  // /dev/null.
  int stdout_fd = -1;
  int stderr_fd = -1;
  // The child's working directory; empty keeps the test's.
  std::string cwd{};
  // Changes to the test's environment, which the child gets otherwise as
  // it is (MAILFS_TEST_RUN included): "NAME=value" sets NAME, replacing
  // the test's value; a bare "NAME" removes it.
  std::vector<std::string> environment{};
  // Look argv[0] up in PATH (posix_spawnp) when it holds no slash.
  bool search_path = false;
};

// The bytes of `fd` from `offset` on, read with pread (the memfd a child
// wrote its output to, a log file); "" for fd -1.
std::string ReadFd(int fd, off_t offset = 0);

// SpawnOptions::environment for the C locale (LC_ALL=C, LANG and LANGUAGE
// removed): tools print their messages in English and sort bytewise,
// whatever the locale the tests run in.
std::vector<std::string> CLocaleEnvironment();

// Starts argv with posix_spawn in a process group of its own (so that
// kill(-pid) also reaches whatever it forks: a shell's commands, a
// redis-server's AOF rewrite), stdin from /dev/null, every descriptor above
// 2 closed (a child must not hold a file the test writes, nor a FUSE
// descriptor), all signals at their defaults and none blocked (whatever
// the test runner ignores or blocks). The caller reaps it. -1 with *error
// set ("posix_spawn ARGV0: reason") when it cannot start, which includes a
// cwd that cannot be entered.
pid_t SpawnProcess(const std::vector<std::string>& argv, const SpawnOptions& options,
                   std::string* error);

// A /bin/sh -c command started with SpawnProcess, stdout and stderr
// captured, in the C locale. Wait kills the whole group when the timeout
// passes.
class ShellProcess {
 public:
  // An empty cwd keeps the test's working directory.
  ShellProcess(std::string command, std::string cwd);
  ~ShellProcess();
  ShellProcess(const ShellProcess&) = delete;
  ShellProcess& operator=(const ShellProcess&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& start_error() const { return start_error_; }
  CommandResult Wait(std::chrono::milliseconds timeout);

 private:
  std::string command_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string start_error_;
  std::optional<CommandResult> result_;
};

// Runs a command and waits for it.
CommandResult RunShell(const std::string& command, const std::string& cwd,
                       std::chrono::milliseconds timeout = kCommandTimeout);
// 'it'\''s' quoting for /bin/sh.
std::string ShellQuote(std::string_view word);

// ---------------------------------------------------------------------------
// Temporary directories and mounts.

// mkdtemp under kTempPrefix; removed recursively (never across a mount) on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Path(std::string_view relative) const;

 private:
  std::string path_;
};

// A store mounted at a fresh directory. Create reports a failure (never a
// skip) and returns nullptr when it cannot mount.
class MountedStore {
 public:
  static std::unique_ptr<MountedStore> Create(std::shared_ptr<MailboxSet> store,
                                              MountOptions options = {});
  ~MountedStore();
  MountedStore(const MountedStore&) = delete;
  MountedStore& operator=(const MountedStore&) = delete;

  const std::string& root() const { return root_; }
  // root + "/" + relative ("" gives the root).
  std::string Path(std::string_view relative) const;
  MailboxSet& store() const { return *store_; }
  const std::shared_ptr<MailboxSet>& store_ptr() const { return store_; }
  // A directory outside the mount for the test's own files.
  const std::string& scratch() const { return scratch_; }
  const std::string& spool() const { return spool_; }
  CommandResult Run(const std::string& command,
                    std::chrono::milliseconds timeout = kCommandTimeout) const;
  // Unmounts now (also done by the destructor); checks nothing stays mounted.
  void Unmount();

 private:
  MountedStore() = default;
  std::shared_ptr<MailboxSet> store_;
  std::unique_ptr<TempDir> base_;
  std::string root_;
  std::string scratch_;
  std::string spool_;
  std::unique_ptr<Mount> mount_;
};

bool IsMounted(const std::string& path);

// Extends the current test's watchdog deadline (default 120 s).
void SetTestTimeout(std::chrono::seconds timeout);

// ---------------------------------------------------------------------------
// The store as data, for before/after comparisons.

struct MessageDigest {
  uint32_t uid = 0;
  std::string flags;
  UnixSeconds internal_date = 0;
  uint64_t size = 0;
  std::string email_id;
  std::string thread_id;
  uint64_t content_hash = 0;
  friend bool operator==(const MessageDigest&, const MessageDigest&) = default;
};

// \Recent counts are session state (claimed by the mount), so they are left out.
struct MailboxDigest {
  std::string name;
  std::string mailbox_id;
  bool readonly = false;
  uint32_t uid_validity = 0;
  uint32_t next_uid = 0;
  uint32_t exists = 0;
  uint32_t unseen = 0;
  std::vector<MessageDigest> messages;
  friend bool operator==(const MailboxDigest&, const MailboxDigest&) = default;
};

struct StoreDigest {
  std::vector<std::string> subscribed;
  std::vector<MailboxDigest> mailboxes;
  std::string error;  // set when the store could not be read
  friend bool operator==(const StoreDigest&, const StoreDigest&) = default;
};

StoreDigest TakeStoreDigest(MailboxSet& store);
// One line per mailbox and message: gtest shows a diff of two of these.
std::string ToString(const StoreDigest& digest);
uint64_t ContentHash(std::string_view bytes);

// What the mount should show for the store: "D name/" for every mailbox and
// \Noselect parent, "F name/<uid>.eml <size> <mtime>" for every message,
// sorted.
std::vector<std::string> ExpectedTree(MailboxSet& store);
// What the mount shows, in the same form (dot-names skipped).
std::vector<std::string> MountedTree(const std::string& root);

// ---------------------------------------------------------------------------
// Store helpers. They report failures with ADD_FAILURE and return empty values.

// A small RFC 5322 message whose Message-ID and body carry `tag`.
std::string TestMessage(std::string_view tag, std::string_view body = "");
uint32_t StoreAppend(MailboxSet& store, std::string_view mailbox, std::string_view bytes,
                     std::string_view flags = "", UnixSeconds date = 1'600'000'000,
                     bool recent = false);
std::shared_ptr<MailboxData> StoreMailbox(MailboxSet& store, std::string_view mailbox);
std::vector<MessageInfo> StoreMessages(MailboxSet& store, std::string_view mailbox);
std::vector<uint32_t> StoreUids(MailboxSet& store, std::string_view mailbox);
std::optional<MessageInfo> StoreInfo(MailboxSet& store, std::string_view mailbox, uint32_t uid);
std::string StoreBytes(MailboxSet& store, std::string_view mailbox, uint32_t uid);
MailboxSnapshot StoreSnapshot(MailboxSet& store, std::string_view mailbox);
std::vector<std::string> StoreMailboxes(MailboxSet& store);
bool StoreHasMailbox(MailboxSet& store, std::string_view mailbox);
std::vector<std::string> StoreSubscribed(MailboxSet& store);
FlagSet Flags(std::string_view text);  // FlagSet::Parse that must succeed
// "7.eml": the canonical name of a UID.
std::string Name(uint32_t uid);
// The UIDs in `after` that are not in `before`, in the order of `after`.
std::vector<uint32_t> NewUids(const std::vector<uint32_t>& before,
                              const std::vector<uint32_t>& after);

// The standard corpus most tests start from:
//   INBOX         four messages appended, the third expunged (a UID gap);
//                 flags "\Seen", "\Flagged $Junk", -, "" ; distinct dates;
//                 one body word "zanzibar" only in the second
//   Archive       two messages, one \Deleted
//   Archive/2024  one message
//   Work          empty
void SeedStandardStore(MailboxSet& store);

// ---------------------------------------------------------------------------
// Syscall helpers. Each returns 0 or the errno of the failing step.

std::string ErrnoName(int err);  // "ENOENT"
// rc == -1 ? errno : 0; call it directly around the syscall.
int ErrnoOf(long rc);

// Closes its descriptor unless Close() did, so that a failed assertion
// never leaves a file open on a mount (which would delay the unmount).
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd();
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Closes now and returns close(2)'s result, errno set on failure.
  int Close();

 private:
  int fd_;
};

struct WriteOutcome {
  int open_errno = 0;
  int write_errno = 0;
  int close_errno = 0;
  bool close_called = false;
  bool ok() const { return open_errno == 0 && write_errno == 0 && close_errno == 0; }
  std::string Describe() const;
};
// open(flags) + write in chunks + close, reporting each step.
WriteOutcome WriteFile(const std::string& path, std::string_view bytes,
                       int flags = 0 /* O_WRONLY|O_CREAT|O_EXCL */, size_t chunk = 65536);
// Reads the whole file; nullopt with *err set on failure.
std::optional<std::string> ReadFile(const std::string& path, int* err = nullptr);
// Reads at `offset` with pread.
std::optional<std::string> PreadFile(const std::string& path, uint64_t offset, size_t count,
                                     int* err = nullptr);
// readdir without "." and "..", in the order returned; nullopt + *err on failure.
std::optional<std::vector<std::string>> ListDir(const std::string& path, int* err = nullptr);
std::optional<std::string> GetXattr(const std::string& path, const std::string& name,
                                    int* err = nullptr);
std::optional<std::vector<std::string>> ListXattr(const std::string& path, int* err = nullptr);
int SetXattr(const std::string& path, const std::string& name, std::string_view value,
             int flags = 0);
int RemoveXattr(const std::string& path, const std::string& name);
int Stat(const std::string& path, struct stat* st);
// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool Eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = std::chrono::seconds(5));
// Splits output into lines (no trailing empty line).
std::vector<std::string> Lines(std::string_view text);
std::vector<std::string> Sorted(std::vector<std::string> v);
// The value of user.mail.internaldate as seconds since the epoch. DESIGN.md
// does not fix its format, so this accepts decimal seconds, an IMAP
// date-time ("17-Jul-1996 02:44:25 -0700"), ISO 8601 and RFC 5322 dates.
std::optional<UnixSeconds> ParseDateAttribute(std::string_view value);
// A file outside the mount.
void WriteLocalFile(const std::string& path, std::string_view bytes);

#define EXPECT_ERRNO(expected, call)                                                         \
  do {                                                                                       \
    errno = 0;                                                                               \
    const long mailfs_rc_ = static_cast<long>(call);                                         \
    const int mailfs_err_ = errno;                                                           \
    EXPECT_EQ(mailfs_rc_, -1) << #call << " succeeded; expected "                            \
                              << ::mailfs::test::ErrnoName(expected);                        \
    if (mailfs_rc_ == -1) {                                                                  \
      EXPECT_EQ(::mailfs::test::ErrnoName(mailfs_err_), ::mailfs::test::ErrnoName(expected)) \
          << #call;                                                                          \
    }                                                                                        \
  } while (0)

#define EXPECT_SYSCALL_OK(call)                                                                  \
  do {                                                                                           \
    errno = 0;                                                                                   \
    const long mailfs_rc_ = static_cast<long>(call);                                             \
    const int mailfs_err_ = errno;                                                               \
    EXPECT_NE(mailfs_rc_, -1) << #call << " failed: " << ::mailfs::test::ErrnoName(mailfs_err_); \
  } while (0)

#define ASSERT_SYSCALL_OK(call)                                                                  \
  do {                                                                                           \
    errno = 0;                                                                                   \
    const long mailfs_rc_ = static_cast<long>(call);                                             \
    const int mailfs_err_ = errno;                                                               \
    ASSERT_NE(mailfs_rc_, -1) << #call << " failed: " << ::mailfs::test::ErrnoName(mailfs_err_); \
  } while (0)

// ---------------------------------------------------------------------------
// The fixture: a store from the backend under test, seeded by the test,
// then mounted.

class MountTest : public ::testing::TestWithParam<MountBackend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Mounts store_ (seed it first). Use as ASSERT_NO_FATAL_FAILURE(MountStore()).
  void MountStore(MountOptions options = {});
  // Skips the test (check IsSkipped() after it) for a backend without
  // read-only mailboxes.
  void MakeReadOnly(std::string_view mailbox);

  MailboxSet& store() { return *store_; }
  std::string P(std::string_view relative) const { return mount_->Path(relative); }
  const std::string& root() const { return mount_->root(); }
  CommandResult Sh(const std::string& command,
                   std::chrono::milliseconds timeout = kCommandTimeout) const {
    return mount_->Run(command, timeout);
  }
  StoreDigest Digest() { return TakeStoreDigest(*store_); }

  std::shared_ptr<MailboxSet> store_;
  std::unique_ptr<MountedStore> mount_;
};

}  // namespace mailfs::test
