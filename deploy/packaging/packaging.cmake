# Debian packages pi-agent and pi-controller, one per install component (agent, controller):
#   cpack -G DEB --config build/CPackConfig.cmake   (or deploy/scripts/package.sh build)
# The same file serves native amd64 builds and the arm64 cross build (deploy/cross/).

set(_pi_deploy_dir "${PROJECT_SOURCE_DIR}/deploy")
set(_pi_packaging_dir "${CMAKE_CURRENT_LIST_DIR}")

# Absolute destinations: Debian keeps units, udev rules and configuration outside the /usr prefix.
install(FILES "${_pi_deploy_dir}/systemd/pi-agent.service"
  DESTINATION /lib/systemd/system COMPONENT agent)
install(FILES "${_pi_deploy_dir}/udev/60-pi-agent-gpio.rules"
  DESTINATION /lib/udev/rules.d COMPONENT agent)
install(FILES "${_pi_deploy_dir}/config/agent.json" DESTINATION /etc/pi-agent COMPONENT agent)
install(FILES "${_pi_deploy_dir}/systemd/pi-agent.default"
  DESTINATION /etc/default RENAME pi-agent COMPONENT agent)
# The units' Documentation= points here.
install(FILES "${PROJECT_SOURCE_DIR}/README.md" DESTINATION share/doc/pi-agent COMPONENT agent)

file(GLOB _pi_profiles CONFIGURE_DEPENDS "${_pi_deploy_dir}/profiles/*.json")
install(FILES "${_pi_deploy_dir}/systemd/pi-controller.service"
  DESTINATION /lib/systemd/system COMPONENT controller)
install(FILES "${_pi_deploy_dir}/config/controller.json"
  DESTINATION /etc/pi-controller COMPONENT controller)
install(FILES ${_pi_profiles} DESTINATION /etc/pi-controller/profiles COMPONENT controller)
install(FILES "${_pi_deploy_dir}/systemd/pi-controller.default"
  DESTINATION /etc/default RENAME pi-controller COMPONENT controller)
install(FILES "${PROJECT_SOURCE_DIR}/README.md"
  DESTINATION share/doc/pi-controller COMPONENT controller)

# CPack 3.25 does not mark /etc files as conffiles by itself; without this list dpkg would
# overwrite an operator's edits on upgrade and delete them on remove.
set(_pi_controller_conffiles /etc/pi-controller/controller.json /etc/default/pi-controller)
foreach(_profile IN LISTS _pi_profiles)
  get_filename_component(_name "${_profile}" NAME)
  list(APPEND _pi_controller_conffiles "/etc/pi-controller/profiles/${_name}")
endforeach()
list(JOIN _pi_controller_conffiles "\n" _pi_controller_conffiles)
file(CONFIGURE OUTPUT "${PROJECT_BINARY_DIR}/packaging/pi-controller/conffiles"
  CONTENT "${_pi_controller_conffiles}\n")
file(CONFIGURE OUTPUT "${PROJECT_BINARY_DIR}/packaging/pi-agent/conffiles"
  CONTENT "/etc/pi-agent/agent.json\n/etc/default/pi-agent\n")

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(_pi_deb_arch arm64)
elseif(NOT CMAKE_CROSSCOMPILING)
  find_program(PI_DPKG_EXECUTABLE dpkg)
  if(PI_DPKG_EXECUTABLE)
    execute_process(COMMAND "${PI_DPKG_EXECUTABLE}" --print-architecture
      OUTPUT_VARIABLE _pi_deb_arch OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
else()
  # CPack would fall back to the build machine's architecture, which is wrong when cross-building.
  message(WARNING "packaging: no Debian architecture known for ${CMAKE_SYSTEM_PROCESSOR}; "
    "pass -DCPACK_DEBIAN_PACKAGE_ARCHITECTURE=<arch>")
endif()
if(_pi_deb_arch AND NOT CPACK_DEBIAN_PACKAGE_ARCHITECTURE)
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "${_pi_deb_arch}")
endif()

set(PI_PACKAGE_MAINTAINER "Pi-Controller maintainers <pi-controller@localhost>"
  CACHE STRING "Maintainer field of the Debian packages")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# RelWithDebInfo binaries are several times larger with their debug sections.
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL agent controller)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${PI_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends comes from the ELF files' NEEDED libraries, looked up in the symbols files of the
# packages that own them: the :arm64 -dev packages' runtime libraries for a cross build.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
if(CMAKE_CROSSCOMPILING)
  set(CPACK_PROJECT_CONFIG_FILE "${_pi_packaging_dir}/cross-shlibdeps.cmake")
endif()
# Scripts get 0755 and conffiles 0644 whatever their mode in the source tree.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME pi-agent)
# adduser: the maintainer scripts create the users and groups. systemd: the package is a
# Type=notify service, and the agent's log streaming runs journalctl.
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_AGENT_DESCRIPTION "Pi-Controller node agent for Raspberry Pi
pi-agent runs on every Pi of a Pi-Controller cluster. It serves the NodeAgent
gRPC API over mutually authenticated TLS: live system metrics from /proc and
/sys, GPIO control through libgpiod, an allowlisted command runner, journal and
log file streaming, health checks and provisioning runs.

The package installs a hardened systemd unit (enabled, not started: the node
must join a cluster first), a udev rule giving the gpio group access to
/dev/gpiochip*, and the example configuration /etc/pi-agent/agent.json.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
  "${_pi_packaging_dir}/pi-agent/postinst" "${_pi_packaging_dir}/pi-agent/prerm"
  "${_pi_packaging_dir}/pi-agent/postrm" "${PROJECT_BINARY_DIR}/packaging/pi-agent/conffiles")

set(CPACK_DEBIAN_CONTROLLER_PACKAGE_NAME pi-controller)
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_CONTROLLER_DESCRIPTION "Pi-Controller control plane and pictl
pi-controller runs on the head node of a Pi-Controller cluster. It owns the
cluster CA, lets Pis join with a token, tracks their health, proxies node
operations, keeps durable work queues and dispatches releases and provisioning
runs. pictl is its command-line client.

The package installs a hardened systemd unit (enabled, not started: run
pi-controller init first), the example configuration
/etc/pi-controller/controller.json and the provisioning profiles in
/etc/pi-controller/profiles.")
set(CPACK_DEBIAN_CONTROLLER_PACKAGE_CONTROL_EXTRA
  "${_pi_packaging_dir}/pi-controller/postinst" "${_pi_packaging_dir}/pi-controller/prerm"
  "${_pi_packaging_dir}/pi-controller/postrm"
  "${PROJECT_BINARY_DIR}/packaging/pi-controller/conffiles")

include(CPack)
