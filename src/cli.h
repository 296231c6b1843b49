// The mailfs command line: parsing, help text and the mount point check,
// kept apart from main so they can be tested without mounting.
//
//   mailfs SOURCE MOUNTPOINT [-f] [-d] [-s] [-o opt[,opt...]] [--name=value...]
//
// mount.fuse3 (the helper behind /etc/fstab and `mount -t fuse.mailfs`) runs
//   /bin/sh -c 'mailfs SOURCE MOUNTPOINT -o rw,noatime,dev,suid'
// after dropping the options it handles itself (user, nouser, users, auto,
// noauto, nofail, _netdev, setuid=, drop_privileges); with drop_privileges
// the MOUNTPOINT it passes is /dev/fd/N, a /dev/fuse descriptor that is
// already mounted.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "backends/registry.h"
#include "fuse/mount.h"
#include "src/status.h"

namespace mailfs {

struct CommandLine {
  enum class Action { kMount, kHelp, kVersion };
  Action action = Action::kMount;
  std::string source;
  std::string mountpoint;  // as given; see CheckMountPoint
  // Only the backend options the user gave: a backend refuses options it
  // does not know, so nothing is filled in by default. password_file (and
  // spool_dir below) are made absolute: a daemon changes to / once mounted.
  SourceOptions source_options;
  // daemonize is true unless -f or -d was given; handle_signals is true
  // (SIGINT, SIGTERM and SIGHUP unmount). fuse_args holds the FUSE
  // mount options to pass through, as "-o", "name[=value]" pairs with ','
  // and '\' escaped for fuse_opt_parse, starting with fsname=SOURCE and
  // subtype=mailfs unless the user gave those.
  MountOptions mount_options;
};

// Parses argv (argv[0] is the program name). --help and --version win over
// everything else. Fails with kInvalidArgument whose detail is a one-line
// message without the "mailfs: " prefix, e.g. "unknown option '-o bogus'".
Result<CommandLine> ParseCommandLine(int argc, const char* const argv[]);

// The text of `mailfs --help`.
std::string HelpText(const std::vector<SourceHelp>& sources);

// The source as it may be shown in /proc/mounts and in messages: a Redis
// URL loses its password ("redis://me:secret@host" -> "redis://me@host").
std::string PublicSourceName(std::string_view source);

// Checks that `path` names an existing, empty directory, and returns its
// absolute, symlink-free form (the mount outlives the working directory:
// a daemon changes to /). A /dev/fd/N path from mount.fuse3 is returned
// unchanged. Fails with kInvalidArgument and a one-line detail naming the
// problem: "mount point /x does not exist", "... is not a directory",
// "... is not empty".
Result<std::string> CheckMountPoint(const std::string& path);

}  // namespace mailfs
