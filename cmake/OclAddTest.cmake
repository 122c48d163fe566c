# ocl_add_test(<exe> [SERIAL] [SEPARATE] LABELS <label>... SOURCES <file>...): one GoogleTest executable
# whose cases become CTest tests carrying the given labels (unit, reference, integration, gpu).
# SERIAL: each case runs alone under `ctest -j N` (RUN_SERIAL), for cases that start processes
# using every core, time their peers or hold the GPU; the others share the cores. The sources
# are compiled in unity batches (OCL_UNITY_BUILD) unless SEPARATE: files whose helpers share
# names.
function(ocl_add_test name)
  cmake_parse_arguments(ARG "SERIAL;SEPARATE" "" "LABELS;SOURCES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  if(OCL_UNITY_BUILD AND NOT ARG_SEPARATE)
    set_target_properties(${name} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
  endif()
  target_link_libraries(${name} PRIVATE ocl::ocl GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  ocl_set_compile_options(${name})
  if(OCL_PCH)
    target_precompile_headers(${name} REUSE_FROM ocl)
  endif()
  set(serial FALSE)
  if(ARG_SERIAL)
    set(serial TRUE)
  endif()
  gtest_discover_tests(${name}
    TEST_PREFIX "${ARG_LABELS}."
    PROPERTIES LABELS "${ARG_LABELS}" RUN_SERIAL ${serial}
    DISCOVERY_TIMEOUT 120)
endfunction()
