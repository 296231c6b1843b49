// The command line parser (src/cli.h), without running or mounting anything.
#include "src/cli.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

namespace mailfs {
namespace {

// gmock is not linked; this is its HasSubstr, as an assertion.
::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

Result<CommandLine> Parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv = {"mailfs"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(nullptr);
  return ParseCommandLine(static_cast<int>(argv.size() - 1), argv.data());
}

std::string Error(std::initializer_list<const char*> args) {
  auto parsed = Parse(args);
  EXPECT_FALSE(parsed.ok());
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(parsed.status().detail().find('\n'), std::string::npos);
  return parsed.status().detail();
}

const std::vector<std::string> kDefaultFuseArgs = {"-o", "fsname=demo", "-o", "subtype=mailfs"};

TEST(CliTest, SourceAndMountPointWithDefaults) {
  auto parsed = Parse({"demo", "/mnt/mail"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->action, CommandLine::Action::kMount);
  EXPECT_EQ(parsed->source, "demo");
  EXPECT_EQ(parsed->mountpoint, "/mnt/mail");
  EXPECT_TRUE(parsed->source_options.empty());
  const MountOptions& mount = parsed->mount_options;
  EXPECT_TRUE(mount.daemonize);
  EXPECT_TRUE(mount.handle_signals);
  EXPECT_FALSE(mount.debug);
  EXPECT_EQ(mount.max_threads, MountOptions().max_threads);
  EXPECT_EQ(mount.spool_dir, "");
  EXPECT_EQ(mount.fuse_args, kDefaultFuseArgs);
}

TEST(CliTest, ForegroundDebugSingleThreaded) {
  auto parsed = Parse({"-f", "demo", "/m"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->mount_options.daemonize);
  EXPECT_FALSE(parsed->mount_options.debug);

  parsed = Parse({"demo", "/m", "-d"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->mount_options.daemonize);
  EXPECT_TRUE(parsed->mount_options.debug);

  parsed = Parse({"demo", "/m", "-o", "debug"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->mount_options.daemonize);
  EXPECT_TRUE(parsed->mount_options.debug);

  parsed = Parse({"demo", "/m", "-s"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->mount_options.daemonize);
  EXPECT_EQ(parsed->mount_options.max_threads, 1u);
}

TEST(CliTest, MailfsOptionsAsDashOAndAsLongOptions) {
  auto parsed = Parse(
      {"maildir:/srv/mail", "/m", "-o", "layout=fs,names=utf8", "-ologin=alice", "--prefix=/p",
       "-o", "users_prefix=/u,separator=:", "--password_file=/etc/pw", "-o", "spool=/var/spool/x"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  SourceOptions expected = {
      {"layout", "fs"},       {"names", "utf8"},  {"login", "alice"},          {"prefix", "/p"},
      {"users_prefix", "/u"}, {"separator", ":"}, {"password_file", "/etc/pw"}};
  EXPECT_EQ(parsed->source_options, expected);
  EXPECT_EQ(parsed->mount_options.spool_dir, "/var/spool/x");
  EXPECT_EQ(parsed->mount_options.fuse_args,
            (std::vector<std::string>{"-o", "fsname=maildir:/srv/mail", "-o", "subtype=mailfs"}));
}

TEST(CliTest, PathOptionsBecomeAbsolute) {
  auto parsed = Parse({"demo", "/m", "-o", "spool=spool/../s", "--password_file=pw"});
  ASSERT_TRUE(parsed.ok());
  std::filesystem::path cwd = std::filesystem::current_path();
  EXPECT_EQ(parsed->mount_options.spool_dir, (cwd / "s").string());
  EXPECT_EQ(parsed->source_options.at("password_file"), (cwd / "pw").string());
}

TEST(CliTest, MaildirPathsBecomeAbsolute) {
  std::filesystem::path cwd = std::filesystem::current_path();
  for (const char* source : {"./Mail", "maildir:Mail", "maildir:./x/../Mail"}) {
    auto parsed = Parse({source, "/m", "-o", "layout=fs", "-o", "fsync=no"});
    ASSERT_TRUE(parsed.ok()) << source;
    EXPECT_EQ(parsed->source, "maildir:" + (cwd / "Mail").string()) << source;
    EXPECT_EQ(parsed->source_options.at("layout"), "fs");
    EXPECT_EQ(parsed->source_options.at("fsync"), "no");
  }
  auto absolute = Parse({"/srv/mail/sam", "/m"});
  ASSERT_TRUE(absolute.ok());
  EXPECT_EQ(absolute->source, "maildir:/srv/mail/sam");
  // Other sources are left as they are.
  auto demo = Parse({"demo", "/m"});
  ASSERT_TRUE(demo.ok());
  EXPECT_EQ(demo->source, "demo");
}

TEST(CliTest, LaterOptionWins) {
  auto parsed = Parse({"demo", "/m", "-o", "layout=fs", "--layout=++"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->source_options.at("layout"), "++");
}

TEST(CliTest, FuseOptionsPassThrough) {
  auto parsed = Parse({"demo", "/m", "-o", "allow_other,default_permissions,ro,auto_unmount"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  std::vector<std::string> expected = kDefaultFuseArgs;
  for (const char* option : {"allow_other", "default_permissions", "ro", "auto_unmount"}) {
    expected.push_back("-o");
    expected.push_back(option);
  }
  EXPECT_EQ(parsed->mount_options.fuse_args, expected);
}

TEST(CliTest, GivenFsnameAndSubtypeReplaceTheDefaults) {
  auto parsed = Parse({"demo", "/m", "-o", "fsname=my\\,mail,subtype=x"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  // The comma was escaped on the command line and stays escaped for libfuse.
  EXPECT_EQ(parsed->mount_options.fuse_args,
            (std::vector<std::string>{"-o", "fsname=my\\,mail", "-o", "subtype=x"}));
}

TEST(CliTest, FsnameHidesARedisPassword) {
  auto parsed = Parse({"redis://me:secret@localhost:6379/0", "/m"});
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->mount_options.fuse_args[1], "fsname=redis://me@localhost:6379/0");
  EXPECT_EQ(PublicSourceName("redis://:pw@h"), "redis://@h");
  EXPECT_EQ(PublicSourceName("redis://h/0"), "redis://h/0");
  EXPECT_EQ(PublicSourceName("redis://me@h"), "redis://me@h");
  EXPECT_EQ(PublicSourceName("/home/me/Maildir"), "/home/me/Maildir");
}

// What mount.fuse3 passes (util/mount.fuse.c): the fstab options minus the
// ones it handles itself, plus dev and suid when running as root.
TEST(CliTest, AcceptsWhatMountFuse3Passes) {
  auto parsed = Parse({"demo", "/m", "-o",
                       "rw,noatime,nodev,nosuid,dev,suid,exec,noexec,sync,"
                       "async,dirsync,atime"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->mount_options.fuse_args.size(), kDefaultFuseArgs.size() + 2 * 12);
  EXPECT_TRUE(parsed->mount_options.daemonize);
}

TEST(CliTest, DropsFstabOnlyOptions) {
  auto parsed = Parse({"demo", "/m", "-o",
                       "defaults,_netdev,nofail,auto,noauto,user,users,nouser,relatime,"
                       "x-systemd.automount,comment=systemd.x,user=alice"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  std::vector<std::string> expected = kDefaultFuseArgs;
  expected.push_back("-o");
  expected.push_back("user=alice");
  EXPECT_EQ(parsed->mount_options.fuse_args, expected);
}

TEST(CliTest, HelpAndVersionWinOverErrors) {
  for (auto args : {std::initializer_list<const char*>{"--help"},
                    {"-h"},
                    {"demo", "-h"},
                    {"--bogus", "--help"}}) {
    auto parsed = Parse(args);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->action, CommandLine::Action::kHelp);
  }
  for (auto args :
       {std::initializer_list<const char*>{"--version"}, {"-V"}, {"a", "b", "c", "-V"}}) {
    auto parsed = Parse(args);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->action, CommandLine::Action::kVersion);
  }
}

TEST(CliTest, Errors) {
  EXPECT_TRUE(Contains(Error({}), "missing SOURCE and MOUNTPOINT"));
  EXPECT_TRUE(Contains(Error({"demo"}), "missing MOUNTPOINT"));
  EXPECT_TRUE(Contains(Error({"demo", "/m", "/x"}), "unexpected argument '/x'"));
  EXPECT_EQ(Error({"demo", "/m", "--bogus"}), "unknown option '--bogus'");
  EXPECT_EQ(Error({"demo", "/m", "-x"}), "unknown option '-x'");
  EXPECT_EQ(Error({"demo", "/m", "-o", "rw,bogus=1"}), "unknown option '-o bogus=1'");
  EXPECT_TRUE(Contains(Error({"demo", "/m", "-o", "nonempty"}), "nonempty"));
  EXPECT_TRUE(Contains(Error({"demo", "/m", "-o", "layout"}), "'layout' needs a value"));
  EXPECT_TRUE(Contains(Error({"demo", "/m", "--spool="}), "'spool' needs a value"));
  // A flag with a value and a valued option without one are both unknown.
  EXPECT_TRUE(Contains(Error({"demo", "/m", "-o", "ro=1"}), "unknown option"));
  EXPECT_TRUE(Contains(Error({"demo", "/m", "-o", "fsname"}), "unknown option"));
  EXPECT_TRUE(Contains(Error({"demo", "/m", "-o"}), "missing argument after '-o'"));
  EXPECT_TRUE(Contains(Error({"", "/m"}), "SOURCE is empty"));
}

TEST(CliTest, DoubleDashEndsOptions) {
  auto parsed = Parse({"--", "-odd-source", "/m"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->source, "-odd-source");
}

TEST(CliTest, HelpTextListsSourcesAndOptions) {
  std::string text = HelpText({{"demo", "the demo store"},
                               {"memory", "an empty store"},
                               {"redis://a-syntax-longer-than-its-column", "a redis store"}});
  for (const char* word : {"demo",
                           "the demo store",
                           "memory",
                           "an empty store",
                           "layout=",
                           "names=",
                           "fsync=",
                           "lock_timeout=",
                           "login=",
                           "prefix=",
                           "users_prefix=",
                           "separator=",
                           "password_file=",
                           "timeout=",
                           "connect_timeout=",
                           "spool=",
                           "-f",
                           "-d",
                           "-s",
                           "-o opt",
                           "fusermount3 -u",
                           "fuse.mailfs"}) {
    EXPECT_TRUE(Contains(text, word)) << word;
  }
  // A syntax too long for its column is not glued to its description.
  EXPECT_TRUE(Contains(text, "redis://a-syntax-longer-than-its-column\n")) << text;
}

class MountPointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "mailfs-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(MountPointTest, EmptyDirectoryIsResolved) {
  std::filesystem::create_directory(dir_ / "m");
  std::filesystem::create_directory_symlink(dir_ / "m", dir_ / "link");
  auto checked = CheckMountPoint((dir_ / "link").string());
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_EQ(*checked, std::filesystem::canonical(dir_ / "m").string());

  char cwd[PATH_MAX];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  ASSERT_EQ(chdir(dir_.c_str()), 0);
  checked = CheckMountPoint("m");
  ASSERT_EQ(chdir(cwd), 0);
  ASSERT_TRUE(checked.ok());
  EXPECT_EQ(*checked, std::filesystem::canonical(dir_ / "m").string());
}

TEST_F(MountPointTest, Refusals) {
  auto missing = CheckMountPoint((dir_ / "none").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(Contains(missing.status().detail(), "does not exist"));

  int fd = open((dir_ / "file").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  close(fd);
  auto file = CheckMountPoint((dir_ / "file").string());
  ASSERT_FALSE(file.ok());
  EXPECT_TRUE(Contains(file.status().detail(), "is not a directory"));

  // dir_ now holds "file": not empty.
  auto full = CheckMountPoint(dir_.string());
  ASSERT_FALSE(full.ok());
  EXPECT_TRUE(Contains(full.status().detail(), "is not empty"));
}

TEST_F(MountPointTest, DevFdFromMountHelperIsKept) {
  auto checked = CheckMountPoint("/dev/fd/5");
  ASSERT_TRUE(checked.ok());
  EXPECT_EQ(*checked, "/dev/fd/5");
}

}  // namespace
}  // namespace mailfs
