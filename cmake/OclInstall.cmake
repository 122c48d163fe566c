# Installs the library, its headers and a CMake package so that find_package(ocl) works.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS ocl EXPORT oclTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ocl DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(OCL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ocl)
install(EXPORT oclTargets NAMESPACE ocl:: DESTINATION ${OCL_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/oclConfig.cmake.in
  ${PROJECT_BINARY_DIR}/oclConfig.cmake INSTALL_DESTINATION ${OCL_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/oclConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/oclConfig.cmake ${PROJECT_BINARY_DIR}/oclConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/oclOpenCV.cmake ${PROJECT_SOURCE_DIR}/cmake/oclSpng.cmake
  DESTINATION ${OCL_CMAKE_DIR})
