// Version of the gpt-oss-native runtime (kept equal to pyproject.toml's).
#pragma once

#define GON_VERSION_MAJOR 0
#define GON_VERSION_MINOR 1
#define GON_VERSION_PATCH 0
#define GON_VERSION_STRING "0.1.0"

namespace gon {
inline constexpr const char* kVersion = GON_VERSION_STRING;
}
