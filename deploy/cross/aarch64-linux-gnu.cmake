# Cross-compiles for 64-bit Raspberry Pi OS / Debian arm64 (Pi 3, 4, 5) on a Debian amd64 machine,
# with the :arm64 libraries that Debian multiarch installs (deploy/scripts/install-cross-deps.sh).
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=deploy/cross/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Multiarch keeps arm64 headers and libraries beside the host's under /usr, so / is the root for
# both; the library architecture above makes find_* prefer the aarch64-linux-gnu directories.
# protoc and the gRPC plugins are host programs and run here.
set(CMAKE_FIND_ROOT_PATH /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
