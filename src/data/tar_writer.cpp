// The tar builder (see include/ocl/data/tar_writer.h).
#include "ocl/data/tar_writer.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace ocl::data {
namespace {

constexpr size_t kTarBlock = 512;

bool fits_ustar(const std::string& name) {
  return name.size() <= 100 &&
         std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// "<length> <key>=<value>\n", the length counting itself.
std::string pax_record(const std::string& key, const std::string& value) {
  const size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t length = body + 1;
  while (std::to_string(length).size() + body != length) ++length;
  return std::to_string(length) + " " + key + "=" + value + "\n";
}

// A numeric field: width - 1 octal digits, zero-padded, then NUL (values past them clamp to the
// largest; sizes are checked before, and only a date after the year 4147 would clamp).
void put_octal(char* field, size_t width, uint64_t value) {
  const uint64_t largest = (uint64_t{1} << (3 * (width - 1))) - 1;
  value = std::min(value, largest);
  field[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0; value >>= 3) field[i] = static_cast<char>('0' + (value & 7));
}

}  // namespace

void TarBuilder::header(const std::string& name, uint64_t size, char type) {
  char h[kTarBlock] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  put_octal(h + 100, 8, 0644);
  put_octal(h + 108, 8, 0);
  put_octal(h + 116, 8, 0);
  put_octal(h + 124, 12, size);
  put_octal(h + 136, 12, static_cast<uint64_t>(std::max<int64_t>(mtime_, 0)));
  h[156] = type;
  std::memcpy(h + 257, "ustar", 6);  // with its NUL
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) sum += static_cast<unsigned char>(h[i]);
  put_octal(h + 148, 7, sum);  // six digits and NUL; the eighth byte stays a space
  bytes_.append(h, kTarBlock);
}

void TarBuilder::pad() { bytes_.append((kTarBlock - bytes_.size() % kTarBlock) % kTarBlock, '\0'); }

void TarBuilder::add(const std::string& name, const uint8_t* data, size_t size) {
  if (name.empty() || name.find('\0') != std::string::npos)
    throw std::invalid_argument("tar member name is empty or holds a NUL byte");
  if (size > (uint64_t{1} << 33) - 1)
    throw std::invalid_argument("tar member '" + name + "' is 8 GiB or larger");
  if (!fits_ustar(name)) {
    const std::string pax = pax_record("path", name);
    header("PaxHeader/" + std::to_string(members_), pax.size(), 'x');
    bytes_ += pax;
    pad();
  }
  header(fits_ustar(name) ? name : name.substr(0, 100), size, '0');
  bytes_.append(reinterpret_cast<const char*>(data), size);
  pad();
  ++members_;
}

std::string TarBuilder::finish() {
  bytes_.append(2 * kTarBlock, '\0');
  std::string out;
  out.swap(bytes_);
  members_ = 0;
  return out;
}

}  // namespace ocl::data
