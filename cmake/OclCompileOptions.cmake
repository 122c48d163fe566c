# Warning, -Werror and sanitizer flags for ocl's own targets (never global flags).
function(ocl_set_compile_options target)
  # Designated initializers name the fields that differ from their defaults; -Wextra's
  # missing-field-initializers would demand all of them.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter
                                            -Wno-missing-field-initializers)
  # GCC 12 to 14 in C++20 mode warn falsely about the standard library's now-constexpr string
  # and vector code at -O2+ ("specified bound ... exceeds maximum object size", "pointer overflow
  # between offset" on a plain `s = "/"`, a std::set of byte vectors; GCC bugs 105329, 105651).
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12)
    target_compile_options(${target} PRIVATE -Wno-stringop-overflow -Wno-stringop-overread
                                              -Wno-restrict -Wno-array-bounds)
  endif()
  if(OCL_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  # Undefined behaviour stops the program (-fno-sanitize-recover) rather than printing a line a
  # passing test run would hide.
  if(OCL_SANITIZE OR OCL_FUZZ)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined
                                              -fno-sanitize-recover=undefined
                                              -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
    # GCC's flow analysis is confused by the sanitizers' instrumentation and reports
    # -Wmaybe-uninitialized inside LibTorch's headers (c10::intrusive_ptr in an optional
    # Generator), which -Werror would turn into a failure.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
    endif()
  endif()
  # libFuzzer's coverage instrumentation for the library code the fuzz targets reach (the targets
  # themselves link with -fsanitize=fuzzer, which brings libFuzzer's main).
  if(OCL_FUZZ)
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()
