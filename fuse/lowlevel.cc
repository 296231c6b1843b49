// The libfuse low-level entry points. This file is the only caller of
// fuse_reply_*: each entry point unpacks the request, asks the Driver, and
// answers. Anything thrown on the way becomes EIO here, so no exception
// reaches libfuse.
#include "fuse/lowlevel.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "fuse/driver.h"

namespace mailfs {
namespace {

Driver& D(fuse_req_t req) { return *static_cast<Driver*>(fuse_req_userdata(req)); }

// Runs `body`; a stray exception answers EIO.
template <typename Body>
void Guarded(fuse_req_t req, const char* op, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    spdlog::error("{}: unexpected exception: {}", op, e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    spdlog::error("{}: unexpected exception", op);
    fuse_reply_err(req, EIO);
  }
}

fuse_entry_param ToEntry(const EntryReply& r) {
  fuse_entry_param e{};
  e.ino = r.ino;
  e.attr = r.attr;
  e.attr_timeout = r.attr_timeout;
  e.entry_timeout = r.entry_timeout;
  return e;
}

void ReplyEntry(fuse_req_t req, int err, const EntryReply& r) {
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_entry_param e = ToEntry(r);
  fuse_reply_entry(req, &e);
}

void OpInit(void*, fuse_conn_info* conn) {
  // readdirplus: `ls -l` gets names and attributes in one pass.
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  // O_TRUNC must arrive as setattr(size) so that truncating a stored
  // message is refused like any other write to it.
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // Writes must reach the driver as they happen, so close() can report the
  // append's result; no writeback cache.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Reads of Maildir files are spliced (see OpRead).
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "lookup", [&] {
    EntryReply r;
    int err = D(req).Lookup(parent, name, &r);
    if (err == ENOENT && r.entry_timeout > 0) {
      // A negative entry: inode 0 with a timeout is how the kernel is told
      // it may cache the name's absence.
      fuse_entry_param e{};
      e.entry_timeout = r.entry_timeout;
      fuse_reply_entry(req, &e);
      return;
    }
    ReplyEntry(req, err, r);
  });
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  D(req).Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) D(req).Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guarded(req, "getattr", [&] {
    struct stat st {};
    double timeout = 0;
    if (int err = D(req).GetAttr(ino, &st, &timeout)) {
      fuse_reply_err(req, err);
    } else {
      fuse_reply_attr(req, &st, timeout);
    }
  });
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Guarded(req, "setattr", [&] {
    SetAttrRequest request;
    if (to_set & FUSE_SET_ATTR_SIZE) {
      request.set_size = true;
      request.size = static_cast<uint64_t>(attr->st_size);
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      request.set_mtime = true;
      request.mtime = time(nullptr);
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      request.set_mtime = true;
      request.mtime = attr->st_mtim.tv_sec;
    }
    if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
      request.set_mode_or_owner = true;
    }
    struct stat st {};
    double timeout = 0;
    if (int err = D(req).SetAttr(ino, request, &st, &timeout)) {
      fuse_reply_err(req, err);
    } else {
      fuse_reply_attr(req, &st, timeout);
    }
  });
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, "opendir", [&] {
    uint64_t handle = 0;
    bool shared = false;
    if (int err = D(req).OpenDir(ino, fuse_req_ctx(req)->pid, &handle, &shared)) {
      fuse_reply_err(req, err);
      return;
    }
    fi->fh = handle;
    // The kernel keeps the listing across opendir until the notifier
    // invalidates the directory (a change in the store) or a change made
    // through this mount does: a warm `ls` costs one round trip. Not one
    // that holds another process's files being written.
    fi->cache_readdir = shared;
    fi->keep_cache = shared;
    if (fuse_reply_open(req, fi) == -ENOENT) D(req).ReleaseDir(handle);  // interrupted
  });
}

void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
                   bool plus) {
  Guarded(req, plus ? "readdirplus" : "readdir", [&] {
    std::vector<char> buffer(size);
    size_t used = 0;
    auto add = [&](std::string_view name, const EntryReply& entry, uint64_t next) {
      std::string name_str(name);
      size_t need;
      if (plus) {
        fuse_entry_param e = ToEntry(entry);
        need = fuse_add_direntry_plus(req, buffer.data() + used, size - used, name_str.c_str(), &e,
                                      static_cast<off_t>(next));
      } else {
        need = fuse_add_direntry(req, buffer.data() + used, size - used, name_str.c_str(),
                                 &entry.attr, static_cast<off_t>(next));
      }
      if (need > size - used) return false;
      used += need;
      return true;
    };
    if (int err = D(req).ReadDir(ino, fi->fh, static_cast<uint64_t>(offset), plus, add)) {
      fuse_reply_err(req, err);
    } else {
      fuse_reply_buf(req, buffer.data(), used);
    }
  });
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, offset, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, offset, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  D(req).ReleaseDir(fi->fh);
  fuse_reply_err(req, 0);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t) {
  Guarded(req, "mkdir", [&] {
    EntryReply r;
    ReplyEntry(req, D(req).Mkdir(parent, name, &r), r);
  });
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "rmdir", [&] { fuse_reply_err(req, D(req).Rmdir(parent, name)); });
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guarded(req, "unlink", [&] { fuse_reply_err(req, D(req).Unlink(parent, name)); });
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
              const char* new_name, unsigned int flags) {
  Guarded(req, "rename",
          [&] { fuse_reply_err(req, D(req).Rename(parent, name, new_parent, new_name, flags)); });
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  Guarded(req, "link", [&] {
    EntryReply r;
    ReplyEntry(req, D(req).Link(ino, new_parent, new_name, &r), r);
  });
}

void OpMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
  fuse_reply_err(req, EPERM);  // only regular files, and those through create
}

void OpSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EPERM); }

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Guarded(req, "create", [&] {
    EntryReply r;
    uint64_t handle = 0;
    if (int err =
            D(req).Create(parent, name, mode, fi->flags, fuse_req_ctx(req)->pid, &r, &handle)) {
      fuse_reply_err(req, err);
      return;
    }
    fi->fh = handle;
    fi->direct_io = 0;
    fuse_entry_param e = ToEntry(r);
    if (fuse_reply_create(req, &e, fi) == -ENOENT) {  // interrupted: nobody holds it
      D(req).Release(handle);
    }
  });
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guarded(req, "open", [&] {
    uint64_t handle = 0;
    bool keep_cache = false;
    if (int err = D(req).Open(ino, fi->flags, fuse_req_ctx(req)->pid, &handle, &keep_cache)) {
      fuse_reply_err(req, err);
      return;
    }
    fi->fh = handle;
    fi->keep_cache = keep_cache;
    // Stored messages never change, so their pages stay valid; and closing a
    // read-only descriptor of one has nothing to report.
    fi->noflush = keep_cache;
    if (fuse_reply_open(req, fi) == -ENOENT) D(req).Release(handle);
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
  Guarded(req, "read", [&] {
    // A stored message that is a file (Maildir) goes from its page cache
    // to the kernel by splice, without a copy through this process.
    std::shared_ptr<const ContentReader> reader;
    if (int err = D(req).StoredReader(ino, fi->fh, &reader)) {
      fuse_reply_err(req, err);
      return;
    }
    if (reader && reader->fd() >= 0) {
      uint64_t total = reader->size();
      uint64_t start = std::min<uint64_t>(static_cast<uint64_t>(offset), total);
      fuse_bufvec data = FUSE_BUFVEC_INIT(std::min<uint64_t>(size, total - start));
      data.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
      data.buf[0].fd = reader->fd();
      data.buf[0].pos = static_cast<off_t>(start);
      if (data.buf[0].size == 0) {
        fuse_reply_buf(req, nullptr, 0);
      } else {
        fuse_reply_data(req, &data, FUSE_BUF_SPLICE_MOVE);  // answers errors itself
      }
      return;
    }
    // A stored message without a file (Redis) is read from the same
    // reader; a file being written (no reader) from its spool file.
    std::string buffer;
    if (int err = D(req).Read(ino, fi->fh, static_cast<uint64_t>(offset), size, &buffer, reader)) {
      fuse_reply_err(req, err);
    } else {
      fuse_reply_buf(req, buffer.data(), buffer.size());
    }
  });
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t offset,
             fuse_file_info* fi) {
  Guarded(req, "write", [&] {
    size_t written = 0;
    if (int err = D(req).Write(ino, fi->fh, static_cast<uint64_t>(offset),
                               std::string_view(data, size), &written)) {
      fuse_reply_err(req, err);
    } else {
      fuse_reply_write(req, written);
    }
  });
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guarded(req, "flush", [&] { fuse_reply_err(req, D(req).Flush(fi->fh, fuse_req_ctx(req)->pid)); });
}

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Guarded(req, "release", [&] {
    D(req).Release(fi->fh);
    fuse_reply_err(req, 0);
  });
}

void OpFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  Guarded(req, "fsync", [&] { fuse_reply_err(req, D(req).Fsync(fi->fh)); });
}

// getxattr and listxattr share the size protocol: size 0 asks for the size.
void ReplyXattrValue(fuse_req_t req, int err, const std::string& value, size_t size) {
  if (err != 0) {
    fuse_reply_err(req, err);
  } else if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (value.size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guarded(req, "getxattr", [&] {
    std::string value;
    int err = D(req).GetXattr(ino, name, &value);
    ReplyXattrValue(req, err, value, size);
  });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guarded(req, "listxattr", [&] {
    std::string names;
    int err = D(req).ListXattr(ino, &names);
    ReplyXattrValue(req, err, names, size);
  });
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  Guarded(req, "setxattr", [&] {
    fuse_reply_err(req, D(req).SetXattr(ino, name, std::string_view(value, size), flags));
  });
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guarded(req, "removexattr", [&] { fuse_reply_err(req, D(req).RemoveXattr(ino, name)); });
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guarded(req, "statfs", [&] {
    struct statvfs st {};
    if (int err = D(req).StatFs(&st)) {
      fuse_reply_err(req, err);
    } else {
      fuse_reply_statfs(req, &st);
    }
  });
}

}  // namespace

const fuse_lowlevel_ops& DriverOperations() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.init = OpInit;
    o.lookup = OpLookup;
    o.forget = OpForget;
    o.forget_multi = OpForgetMulti;
    o.getattr = OpGetattr;
    o.setattr = OpSetattr;
    o.opendir = OpOpendir;
    o.readdir = OpReaddir;
    o.readdirplus = OpReaddirplus;
    o.releasedir = OpReleasedir;
    o.mkdir = OpMkdir;
    o.rmdir = OpRmdir;
    o.unlink = OpUnlink;
    o.rename = OpRename;
    o.link = OpLink;
    o.mknod = OpMknod;
    o.symlink = OpSymlink;
    o.create = OpCreate;
    o.open = OpOpen;
    o.read = OpRead;
    o.write = OpWrite;
    o.flush = OpFlush;
    o.release = OpRelease;
    o.fsync = OpFsync;
    o.getxattr = OpGetxattr;
    o.listxattr = OpListxattr;
    o.setxattr = OpSetxattr;
    o.removexattr = OpRemovexattr;
    o.statfs = OpStatfs;
    return o;
  }();
  return ops;
}

}  // namespace mailfs
