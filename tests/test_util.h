// Helpers shared by the test suites.
#pragma once

#include <string>

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

// Expects `statement` to throw c10::Error or std::exception whose message contains `needle`.
#define OCL_EXPECT_THROW_WITH(statement, needle)                                                   \
  do {                                                                                             \
    bool ocl_thrown_ = false;                                                                      \
    try {                                                                                          \
      statement;                                                                                   \
    } catch (const c10::Error& e) {                                                                \
      ocl_thrown_ = true;                                                                          \
      EXPECT_NE(std::string(e.what_without_backtrace()).find(needle), std::string::npos)           \
          << "message: " << e.what_without_backtrace();                                            \
    } catch (const std::exception& e) {                                                            \
      ocl_thrown_ = true;                                                                          \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what(); \
    }                                                                                              \
    EXPECT_TRUE(ocl_thrown_) << #statement " did not throw";                                       \
  } while (0)
