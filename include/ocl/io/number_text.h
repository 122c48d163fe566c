// Number text shared by the config writer and the weights metadata: the shortest decimal that
// reads back as the same double (std::to_chars), locale-independent.
#pragma once

#include <string>

namespace ocl::io {

/// Shortest round-trip text of `v`: "0.25", "1e-05", "0.30000000000000004"; YAML's ".nan",
/// ".inf" and "-.inf" for the non-finite values.
std::string shortest_number(double v);

}  // namespace ocl::io
