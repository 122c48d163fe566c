# ocl_add_test(<exe> [SERIAL] LABELS <label>... SOURCES <file>...): one GoogleTest executable
# whose cases become CTest tests carrying the given labels (unit, reference, integration, gpu).
# SERIAL: each case runs alone under `ctest -j N` (RUN_SERIAL), for cases that start processes
# using every core (two at once took ten times as long: OpenMP threads spinning on shared cores),
# time their peers or hold the GPU; the others share the cores. The sources are compiled in
# unity batches (OCL_UNITY_BUILD): each file's helpers need names of their own. With
# OCL_TEST_SHARDS=N (CI), a non-SERIAL executable is N CTest tests instead, <label>.shard-I-of-N,
# each running every N-th case (GoogleTest's sharding): a LibTorch process start costs 0.5 s
# (1 s with CUDA's libraries), about a third of the unit suite when every case is its own process.
# Skipped cases are then named in Testing/Temporary/LastTest.log.
function(ocl_add_test name)
  cmake_parse_arguments(ARG "SERIAL" "" "LABELS;SOURCES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  if(OCL_UNITY_BUILD)
    set_target_properties(${name} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
  endif()
  target_link_libraries(${name} PRIVATE ocl::ocl GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  ocl_set_compile_options(${name})
  if(OCL_PCH)
    target_precompile_headers(${name} REUSE_FROM ocl)
  endif()
  if(OCL_TEST_SHARDS GREATER 0 AND NOT ARG_SERIAL)
    foreach(i RANGE 1 ${OCL_TEST_SHARDS})
      math(EXPR index "${i} - 1")
      set(test "${ARG_LABELS}.shard-${i}-of-${OCL_TEST_SHARDS}")
      add_test(NAME ${test} COMMAND ${name})
      set_tests_properties(${test} PROPERTIES LABELS "${ARG_LABELS}"
        ENVIRONMENT "GTEST_TOTAL_SHARDS=${OCL_TEST_SHARDS};GTEST_SHARD_INDEX=${index}")
    endforeach()
    return()
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
