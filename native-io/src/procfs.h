// Small readers of /proc and /sys files shared by the function families.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

namespace c10m {

// The first line of a file, or "" when it cannot be read.
inline std::string ReadFirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  return line;
}

// A "Key:   value kB" line of /proc/meminfo, in bytes when the unit is kB; -1 when absent.
inline int64_t MeminfoValue(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':') {
      int64_t value = std::strtoll(line.c_str() + key.size() + 1, nullptr, 10);
      return line.find("kB") != std::string::npos ? value * 1024 : value;
    }
  }
  return -1;
}

}  // namespace c10m
