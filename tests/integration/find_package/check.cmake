# find_package(ocl) from a separate CMake project, against a throw-away install of this build.
# Run by CTest (integration.find_package) as
#   cmake -DOCL_BINARY_DIR=... -DCONSUMER_SOURCE_DIR=... -DWORK_DIR=... -DCMAKE_GENERATOR=...
#         [-DTorch_DIR=...] -P check.cmake
# Steps: install OCL_BINARY_DIR into WORK_DIR/prefix, configure CONSUMER_SOURCE_DIR into
# WORK_DIR/build with only that prefix, build it, run it. Any failing step is a FATAL_ERROR that
# carries the step's output.
cmake_minimum_required(VERSION 3.18)

foreach(var OCL_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR CMAKE_GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check.cmake: -D${var}=... is required")
  endif()
endforeach()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# step(NAME COMMAND...): runs the command, fails with its output when it exits non-zero.
function(step name)
  message(STATUS "find_package check: ${name}")
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out
    TIMEOUT 540)
  if(NOT rc STREQUAL "0")
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "find_package check: ${name} failed (${rc})\n  command: ${cmd}\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

step("install ${OCL_BINARY_DIR} into ${prefix}"
  "${CMAKE_COMMAND}" --install "${OCL_BINARY_DIR}" --prefix "${prefix}" --config Release)

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}" -B "${build}" -G "${CMAKE_GENERATOR}"
  -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_PREFIX_PATH=${prefix}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(DEFINED Torch_DIR AND NOT Torch_DIR STREQUAL "" AND NOT Torch_DIR MATCHES "-NOTFOUND$")
  list(APPEND configure_args "-DTorch_DIR=${Torch_DIR}")
endif()
step("configure the consumer" "${CMAKE_COMMAND}" ${configure_args})

# The ocl found must be the one just installed, not one elsewhere on the system.
file(STRINGS "${build}/CMakeCache.txt" ocl_dir_line REGEX "^ocl_DIR:")
string(REGEX REPLACE "^ocl_DIR:[A-Z]+=" "" ocl_dir "${ocl_dir_line}")
file(REAL_PATH "${prefix}" real_prefix)
if(EXISTS "${ocl_dir}")
  file(REAL_PATH "${ocl_dir}" ocl_dir)
endif()
string(FIND "${ocl_dir}/" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "find_package check: the consumer found ocl at '${ocl_dir}', not under ${prefix}")
endif()

step("build the consumer" "${CMAKE_COMMAND}" --build "${build}" --config Release)

set(exe "")
foreach(candidate "${build}/ocl_consumer" "${build}/Release/ocl_consumer")
  if(EXISTS "${candidate}")
    set(exe "${candidate}")
    break()
  endif()
endforeach()
if(exe STREQUAL "")
  message(FATAL_ERROR "find_package check: no ocl_consumer executable under ${build}")
endif()

step("run the consumer" "${exe}")
message(STATUS "${step_output}")
message(STATUS "find_package check: passed (ocl from ${ocl_dir})")
