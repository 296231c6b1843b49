// mailfs SOURCE MOUNTPOINT [options]: opens the store, mounts it, serves
// until it is unmounted. The command line is in cli.h; the rules for it are
// DESIGN.md, "Command line".
#include <fmt/format.h>
#include <fuse_log.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "backends/registry.h"
#include "fuse/mount.h"
#include "src/cli.h"

namespace {

// Every refusal is one line on stderr and exit status 1, before anything
// is mounted.
int Fail(std::string message) {
  std::replace(message.begin(), message.end(), '\n', ' ');
  fmt::print(stderr, "mailfs: {}\n", message);
  return 1;
}

// A daemon has no terminal after fuse_daemonize, so it logs to syslog; in
// the foreground the log goes to stderr.
void SetUpLogging(const mailfs::MountOptions& options) {
  std::shared_ptr<spdlog::logger> logger;
  if (options.daemonize) {
    logger = spdlog::syslog_logger_mt("mailfs", "mailfs", LOG_PID, LOG_DAEMON);
  } else {
    logger = spdlog::stderr_logger_mt("mailfs");
  }
  logger->set_level(options.debug ? spdlog::level::debug : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// libfuse's own messages ("fuse: failed to open /dev/fuse: Permission
// denied") go to the log. While mounting, its errors are held back instead,
// so that a failed mount is still told in one line on stderr.
class FuseLog {
 public:
  static void Install() { fuse_set_log_func(&FuseLog::Log); }
  static void HoldErrors(bool hold) {
    std::lock_guard lock(mu_);
    hold_errors_ = hold;
  }
  // The errors held back, joined by "; ".
  static std::string TakeHeldErrors() {
    std::lock_guard lock(mu_);
    return std::exchange(held_, std::string());
  }

 private:
  static void Log(enum fuse_log_level level, const char* fmt, va_list ap) {
    char buffer[1024];
    vsnprintf(buffer, sizeof(buffer), fmt, ap);
    std::string message = buffer;
    while (!message.empty() && message.back() == '\n') message.pop_back();
    if (level <= FUSE_LOG_ERR) {
      std::lock_guard lock(mu_);
      if (hold_errors_) {
        held_ += held_.empty() ? message : "; " + message;
        return;
      }
    }
    spdlog::level::level_enum spdlog_level = level <= FUSE_LOG_ERR       ? spdlog::level::err
                                             : level == FUSE_LOG_WARNING ? spdlog::level::warn
                                             : level <= FUSE_LOG_INFO    ? spdlog::level::info
                                                                         : spdlog::level::debug;
    spdlog::log(spdlog_level, "{}", message);
  }

  static inline std::mutex mu_;
  static inline bool hold_errors_ = false;  // GUARDED_BY(mu_)
  static inline std::string held_;          // GUARDED_BY(mu_)
};

}  // namespace

int main(int argc, char** argv) {
  auto parsed = mailfs::ParseCommandLine(argc, argv);
  if (!parsed.ok()) return Fail(parsed.status().detail());
  const mailfs::CommandLine& command_line = *parsed;
  switch (command_line.action) {
    case mailfs::CommandLine::Action::kHelp:
      fmt::print("{}", mailfs::HelpText(mailfs::DescribeSources()));
      return 0;
    case mailfs::CommandLine::Action::kVersion:
      fmt::print("mailfs {}\n", MAILFS_VERSION);
      return 0;
    case mailfs::CommandLine::Action::kMount:
      break;
  }

  auto mountpoint = mailfs::CheckMountPoint(command_line.mountpoint);
  if (!mountpoint.ok()) return Fail(mountpoint.status().detail());
  std::string source_name = mailfs::PublicSourceName(command_line.source);

  SetUpLogging(command_line.mount_options);
  auto store = mailfs::OpenSource(command_line.source, command_line.source_options);
  if (!store.ok()) {
    // The registry's messages usually name the source already.
    const std::string& detail = store.status().detail();
    if (detail.find(source_name) != std::string::npos) return Fail(detail);
    return Fail(fmt::format("source '{}': {}", source_name, detail));
  }
  FuseLog::Install();
  FuseLog::HoldErrors(true);
  auto mount =
      mailfs::Mount::Start(std::move(store).value(), *mountpoint, command_line.mount_options);
  FuseLog::HoldErrors(false);
  std::string fuse_errors = FuseLog::TakeHeldErrors();
  if (!mount.ok()) {
    std::string message = fmt::format("cannot mount '{}' at {}: {}", source_name, *mountpoint,
                                      mount.status().detail());
    if (!fuse_errors.empty()) message += fmt::format(" ({})", fuse_errors);
    return Fail(message);
  }
  if (!fuse_errors.empty()) spdlog::warn("{}", fuse_errors);
  spdlog::info("mounted '{}' at {}", source_name, *mountpoint);
  return (*mount)->Wait();
}
