# ocl_add_test(<exe> LABELS <label>... SOURCES <file>...): one GoogleTest executable whose
# cases become CTest tests carrying the given labels (unit, reference, integration, gpu).
function(ocl_add_test name)
  cmake_parse_arguments(ARG "" "" "LABELS;SOURCES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ocl::ocl GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  ocl_set_compile_options(${name})
  if(OCL_PCH)
    target_precompile_headers(${name} REUSE_FROM ocl)
  endif()
  gtest_discover_tests(${name}
    TEST_PREFIX "${ARG_LABELS}."
    PROPERTIES LABELS "${ARG_LABELS}"
    DISCOVERY_TIMEOUT 120)
endfunction()
