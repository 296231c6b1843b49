// The table of libfuse low-level operations, served by a Driver passed as
// the session's userdata.
#pragma once

#include <fuse_lowlevel.h>

namespace mailfs {

const fuse_lowlevel_ops& DriverOperations();

}  // namespace mailfs
