#include "src/cli.h"

#include <dirent.h>
#include <fmt/format.h>
#include <fuse_log.h>
#include <fuse_opt.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

namespace mailfs {
namespace {

// mailfs options that go to the backend (SourceOptions), and the one that
// goes to the driver.
constexpr std::string_view kSourceOptionNames[] = {
    "layout",       "names",     "fsync",         "lock_timeout", "login",           "prefix",
    "users_prefix", "separator", "password_file", "timeout",      "connect_timeout",
};
constexpr std::string_view kSpoolOption = "spool";

// Mount options libfuse 3.14 itself understands (lib/mount.c, the session
// options of lib/fuse_lowlevel.c): passed through unchanged.
// clang-format off
constexpr std::string_view kFuseFlags[] = {
    "rw", "ro", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "dirsync",
    "atime", "noatime", "allow_other", "allow_root", "auto_unmount", "default_permissions"};
// clang-format on
constexpr std::string_view kFuseValuedOptions[] = {
    "fsname", "subtype", "context", "fscontext", "defcontext", "rootcontext",
    "user",  // user=NAME: added by mount(8) for an fstab "user" mount
};

// Options that mount(8), fstab or systemd may hand to a mount helper and
// that mean nothing here (or that libfuse 3.14 would refuse although they
// are harmless for mailfs): accepted and dropped, so fstab lines work.
constexpr std::string_view kIgnoredOptions[] = {
    "defaults",   "auto",       "noauto",      "nofail",        "_netdev",
    "user",       "nouser",     "users",       "owner",         "group",
    "relatime",   "norelatime", "strictatime", "nostrictatime", "lazytime",
    "nolazytime", "diratime",   "nodiratime",  "iversion",      "noiversion"};
constexpr std::string_view kIgnoredPrefixes[] = {"x-", "comment="};

template <size_t N>
bool Contains(const std::string_view (&list)[N], std::string_view s) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

// fuse_opt_parse splits -o lists at commas; a value passed on must have its
// commas and backslashes escaped again.
std::string EscapeOption(std::string_view option) {
  std::string out;
  for (char c : option) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

struct ParseState {
  CommandLine command_line;
  std::vector<std::string> positional;
  std::vector<std::string> fuse_options;  // unescaped "name[=value]"
  std::string error;                      // the first problem found
  bool help = false;
  bool version = false;
  bool has_fsname = false;
  bool has_subtype = false;

  void Fail(std::string message) {
    if (error.empty()) error = std::move(message);
  }
};

// Sets a mailfs option given as "-o name=value" or "--name=value". Returns
// false if `name` is not a mailfs option.
bool SetMailfsOption(ParseState& state, std::string_view name, std::string_view value,
                     bool has_value) {
  bool is_source_option = Contains(kSourceOptionNames, name);
  if (!is_source_option && name != kSpoolOption) return false;
  if (!has_value || value.empty()) {
    state.Fail(fmt::format("option '{}' needs a value ({}=VALUE)", name, name));
    return true;
  }
  // A daemon changes to / once mounted, so a relative path is taken
  // relative to where mailfs was started, now.
  std::string text(value);
  if (name == "password_file" || name == kSpoolOption) {
    text = std::filesystem::absolute(text).lexically_normal().string();
  }
  if (is_source_option) {
    state.command_line.source_options[std::string(name)] = std::move(text);
  } else {
    state.command_line.mount_options.spool_dir = std::move(text);
  }
  return true;
}

void SetDebug(ParseState& state) {
  state.command_line.mount_options.debug = true;
  state.command_line.mount_options.daemonize = false;
}

// One element of a -o list, already unescaped.
void HandleMountOption(ParseState& state, std::string_view option) {
  size_t eq = option.find('=');
  bool has_value = eq != std::string_view::npos;
  std::string_view name = option.substr(0, eq);
  std::string_view value = has_value ? option.substr(eq + 1) : std::string_view();

  if (SetMailfsOption(state, name, value, has_value)) return;
  if (option == "debug") {  // libfuse's spelling of -d
    SetDebug(state);
    return;
  }
  if ((!has_value && Contains(kFuseFlags, name)) ||
      (has_value && Contains(kFuseValuedOptions, name))) {
    if (name == "fsname") state.has_fsname = true;
    if (name == "subtype") state.has_subtype = true;
    state.fuse_options.emplace_back(option);
    return;
  }
  if (!has_value && Contains(kIgnoredOptions, name)) return;
  for (std::string_view prefix : kIgnoredPrefixes) {
    if (option.starts_with(prefix)) return;
  }
  if (option == "nonempty") {
    state.Fail("option 'nonempty' is not supported: the mount point must be an empty directory");
    return;
  }
  state.Fail(fmt::format("unknown option '-o {}'", option));
}

// An argument of its own that starts with '-' (other than -o).
void HandleArgvOption(ParseState& state, std::string_view arg) {
  if (arg == "-h" || arg == "--help") {
    state.help = true;
  } else if (arg == "-V" || arg == "--version") {
    state.version = true;
  } else if (arg == "-f" || arg == "--foreground") {
    state.command_line.mount_options.daemonize = false;
  } else if (arg == "-d" || arg == "--debug") {
    SetDebug(state);
  } else if (arg == "-s") {
    state.command_line.mount_options.max_threads = 1;
  } else if (arg.starts_with("--")) {
    std::string_view option = arg.substr(2);
    size_t eq = option.find('=');
    bool has_value = eq != std::string_view::npos;
    std::string_view value = has_value ? option.substr(eq + 1) : std::string_view();
    if (!SetMailfsOption(state, option.substr(0, eq), value, has_value)) {
      state.Fail(fmt::format("unknown option '{}'", arg));
    }
  } else {
    state.Fail(fmt::format("unknown option '{}'", arg));
  }
}

// Called by fuse_opt_parse for every argument and every element of a -o
// list. Never fails the parse: the first problem is kept, so that --help
// still works on an otherwise wrong command line.
int ProcessArgument(void* data, const char* arg, int key, struct fuse_args* /*outargs*/) {
  auto& state = *static_cast<ParseState*>(data);
  std::string_view a(arg);
  if (key == FUSE_OPT_KEY_NONOPT) {
    state.positional.emplace_back(a);
  } else if (a.starts_with("-")) {
    HandleArgvOption(state, a);
  } else {
    HandleMountOption(state, a);
  }
  return 0;
}

// fuse_opt_parse reports its own errors ("missing argument after `-o'")
// through fuse_log; they are caught here to become our one-line message.
// ParseCommandLine is not meant to run on two threads at once.
std::string* captured_fuse_log = nullptr;

void CaptureFuseLog(enum fuse_log_level /*level*/, const char* fmt, va_list ap) {
  char buffer[512];
  vsnprintf(buffer, sizeof(buffer), fmt, ap);
  if (captured_fuse_log != nullptr && captured_fuse_log->empty()) *captured_fuse_log = buffer;
}

std::string CleanFuseMessage(std::string message) {
  if (message.starts_with("fuse: ")) message.erase(0, 6);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  std::replace(message.begin(), message.end(), '`', '\'');
  std::replace(message.begin(), message.end(), '\n', ' ');
  return message.empty() ? "cannot parse the command line" : message;
}

}  // namespace

// A daemon changes to / once mounted, so the path of a Maildir source
// ("maildir:PATH", or a plain PATH) is made absolute now: "maildir:~/Mail"
// stays as the shell left it, "./Mail" becomes "maildir:/home/sam/Mail".
std::string AbsoluteMaildirSource(std::string_view source) {
  constexpr std::string_view kScheme = "maildir:";
  bool tagged = source.starts_with(kScheme);
  bool plain_path = source.starts_with("/") || source.starts_with("./") ||
                    source.starts_with("../") || source == "." || source == "..";
  if (!tagged && !plain_path) return std::string(source);
  std::string_view path = tagged ? source.substr(kScheme.size()) : source;
  if (path.empty()) return std::string(source);
  return std::string(kScheme) +
         std::filesystem::absolute(std::string(path)).lexically_normal().string();
}

std::string PublicSourceName(std::string_view source) {
  size_t scheme = source.find("://");
  if (scheme == std::string_view::npos) return std::string(source);
  size_t start = scheme + 3;
  size_t at = source.find('@', start);
  size_t slash = source.find('/', start);
  if (at == std::string_view::npos || (slash != std::string_view::npos && slash < at)) {
    return std::string(source);
  }
  size_t colon = source.find(':', start);
  if (colon == std::string_view::npos || colon > at) return std::string(source);
  return fmt::format("{}{}", source.substr(0, colon), source.substr(at));
}

Result<CommandLine> ParseCommandLine(int argc, const char* const argv[]) {
  ParseState state;
  state.command_line.mount_options.daemonize = true;
  state.command_line.mount_options.handle_signals = true;

  // fuse_opt_parse does not change the argv it is given; it builds a new
  // one in `args`, which is freed here.
  struct fuse_args args = FUSE_ARGS_INIT(argc, const_cast<char**>(argv));
  std::string fuse_error;
  captured_fuse_log = &fuse_error;
  fuse_set_log_func(CaptureFuseLog);
  int parsed = fuse_opt_parse(&args, &state, nullptr, ProcessArgument);
  fuse_set_log_func(nullptr);  // back to libfuse's default
  captured_fuse_log = nullptr;
  fuse_opt_free_args(&args);

  if (state.help) {
    state.command_line.action = CommandLine::Action::kHelp;
    return std::move(state.command_line);
  }
  if (state.version) {
    state.command_line.action = CommandLine::Action::kVersion;
    return std::move(state.command_line);
  }
  if (parsed == -1) return Status::InvalidArgument(CleanFuseMessage(fuse_error));
  if (!state.error.empty()) return Status::InvalidArgument(state.error);
  if (state.positional.empty()) {
    return Status::InvalidArgument("missing SOURCE and MOUNTPOINT (see mailfs --help)");
  }
  if (state.positional.size() == 1) {
    return Status::InvalidArgument("missing MOUNTPOINT (see mailfs --help)");
  }
  if (state.positional.size() > 2) {
    return Status::InvalidArgument(
        fmt::format("unexpected argument '{}' (see mailfs --help)", state.positional[2]));
  }
  if (state.positional[0].empty()) return Status::InvalidArgument("SOURCE is empty");
  if (state.positional[1].empty()) return Status::InvalidArgument("MOUNTPOINT is empty");

  CommandLine& command_line = state.command_line;
  command_line.source = AbsoluteMaildirSource(state.positional[0]);
  command_line.mountpoint = state.positional[1];
  std::vector<std::string>& fuse_args = command_line.mount_options.fuse_args;
  if (!state.has_fsname) {
    fuse_args.push_back("-o");
    fuse_args.push_back(
        EscapeOption(std::string("fsname=") + PublicSourceName(command_line.source)));
  }
  if (!state.has_subtype) {
    fuse_args.push_back("-o");
    fuse_args.push_back("subtype=mailfs");
  }
  for (const std::string& option : state.fuse_options) {
    fuse_args.push_back("-o");
    fuse_args.push_back(EscapeOption(option));
  }
  return std::move(command_line);
}

std::string HelpText(const std::vector<SourceHelp>& sources) {
  std::string text =
      "usage: mailfs SOURCE MOUNTPOINT [-f] [-d] [-s] [-o opt[,opt...]] [--name=value...]\n"
      "       mailfs --help | --version\n"
      "\n"
      "Mounts a mail store at MOUNTPOINT, an existing empty directory: mailboxes\n"
      "are directories, messages are files named <uid>.eml, IMAP flags are\n"
      "extended attributes (user.mail.*). Without -f, mailfs returns once the\n"
      "store is mounted and keeps serving in the background.\n"
      "\n"
      "sources:\n";
  for (const SourceHelp& source : sources) {
    // A syntax too long for its column gets a line of its own.
    if (source.syntax.size() < 26) {
      text += fmt::format("    {:<26}{}\n", source.syntax, source.description);
    } else {
      text += fmt::format("    {}\n    {:<26}{}\n", source.syntax, "", source.description);
    }
  }
  text +=
      "\n"
      "mailfs options, as -o name=value or --name=value:\n"
      "    layout=++ | layout=fs     maildir: folder layout (default ++, Maildir++)\n"
      "    names=mutf7 | names=utf8  maildir: encoding of new folder names (default:\n"
      "                              what the store already uses, else mutf7)\n"
      "    fsync=yes | fsync=no      maildir: fsync each message before close() returns\n"
      "                              (default yes; no is like Dovecot's mail_fsync=never)\n"
      "    lock_timeout=SECONDS      maildir: how long to wait for dovecot-uidlist.lock\n"
      "                              (default 30)\n"
      "    login=NAME                redis: whose mailboxes to mount (pymap's login\n"
      "                              name; default: your user name)\n"
      "    prefix=PREFIX             redis: pymap's key prefix (default /mail)\n"
      "    users_prefix=PREFIX       redis: pymap's users prefix (default /users)\n"
      "    separator=SEP             redis: pymap's key separator (default /)\n"
      "    password_file=PATH        redis: file holding the Redis password;\n"
      "                              MAILFS_REDIS_PASSWORD in the environment works too\n"
      "    timeout=SECONDS           redis: how long a command may take before the\n"
      "                              operation fails with EIO (default 5)\n"
      "    connect_timeout=SECONDS   redis: the same for connecting (default 2)\n"
      "    spool=DIR                 all: where files being written wait for their\n"
      "                              close (default: a Maildir's own tmp/, else a\n"
      "                              private directory under /var/tmp, removed at\n"
      "                              unmount)\n"
      "\n"
      "FUSE options:\n"
      "    -f                        stay in the foreground\n"
      "    -d                        log every request (implies -f)\n"
      "    -s                        serve requests on a single thread\n"
      "    -o opt[,opt...]           mount options, e.g. allow_other, allow_root,\n"
      "                              default_permissions, auto_unmount, ro,\n"
      "                              fsname=NAME; the generic mount options (rw, dev,\n"
      "                              nodev, suid, nosuid, exec, noexec, noatime,\n"
      "                              defaults, _netdev, nofail, x-*, ...) are accepted\n"
      "                              so that mailfs works from /etc/fstab\n"
      "\n"
      "examples:\n"
      "    mailfs demo ~/mail        mount the demo store in the background\n"
      "    mailfs memory /tmp/m -f   mount an empty store, in the foreground\n"
      "    fusermount3 -u MOUNTPOINT unmount (or: umount MOUNTPOINT, as root)\n"
      "\n"
      "/etc/fstab (mount runs mount.fuse3, which runs \"mailfs\" with the default\n"
      "PATH, so it must be installed in /usr/local/bin, /usr/bin or the like):\n"
      "    demo /home/me/mail fuse.mailfs defaults 0 0\n";
  return text;
}

Result<std::string> CheckMountPoint(const std::string& path) {
  if (path.starts_with("/dev/fd/") && path.size() > 8 &&
      path.find_first_not_of("0123456789", 8) == std::string::npos) {
    return path;  // mount.fuse3 -o drop_privileges: already mounted
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int error = errno;
    if (error == ENOENT) {
      return Status::InvalidArgument(fmt::format("mount point {} does not exist", path));
    }
    if (error == ENOTCONN) {
      return Status::InvalidArgument(fmt::format(
          "mount point {}: {} (a mount whose process died; unmount it with fusermount3 -u {})",
          path, strerror(error), path));
    }
    return Status::InvalidArgument(fmt::format("mount point {}: {}", path, strerror(error)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(fmt::format("mount point {} is not a directory", path));
  }
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(path.c_str()), closedir);
  if (!dir) {
    return Status::InvalidArgument(fmt::format("mount point {}: {}", path, strerror(errno)));
  }
  while (struct dirent* entry = readdir(dir.get())) {
    if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
      return Status::InvalidArgument(fmt::format("mount point {} is not empty", path));
    }
  }
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return Status::InvalidArgument(fmt::format("mount point {}: {}", path, strerror(errno)));
  }
  return std::string(resolved);
}

}  // namespace mailfs
