# Read by cpack (CPACK_PROJECT_CONFIG_FILE) for cross builds only. With the host architecture
# set, dpkg-shlibdeps treats the binaries as a Debian cross build: it searches
# /usr/lib/<multiarch> first and reads them with <triplet>-objdump.
set(ENV{DEB_HOST_ARCH} "${CPACK_DEBIAN_PACKAGE_ARCHITECTURE}")
