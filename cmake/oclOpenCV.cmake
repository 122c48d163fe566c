# Defines ocl::opencv, an imported target for the three OpenCV modules ocl uses (core, imgproc,
# imgcodecs). Debian's libopencv-{core,imgproc,imgcodecs}-dev ship neither OpenCVConfig.cmake
# nor a pkg-config file (those come with libopencv-dev, which pulls a GUI stack), so the headers
# and libraries are looked up directly; an OpenCVConfig.cmake is used when one is installed.
# Included by ocl's own build and by the installed oclConfig.cmake.
if(TARGET ocl::opencv)
  return()
endif()

find_package(OpenCV QUIET CONFIG COMPONENTS core imgproc imgcodecs)
if(OpenCV_FOUND)
  add_library(ocl::opencv INTERFACE IMPORTED)
  set_target_properties(ocl::opencv PROPERTIES
    INTERFACE_LINK_LIBRARIES "opencv_core;opencv_imgproc;opencv_imgcodecs"
    INTERFACE_INCLUDE_DIRECTORIES "${OpenCV_INCLUDE_DIRS}")
  return()
endif()

find_path(OCL_OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
set(_ocl_opencv_libs "")
foreach(_module core imgproc imgcodecs)
  find_library(OCL_OPENCV_${_module}_LIBRARY NAMES opencv_${_module})
  if(NOT OCL_OPENCV_${_module}_LIBRARY)
    message(FATAL_ERROR "OpenCV ${_module} not found: install libopencv-${_module}-dev "
                        "(bash scripts/install-deps.sh)")
  endif()
  list(APPEND _ocl_opencv_libs "${OCL_OPENCV_${_module}_LIBRARY}")
endforeach()
if(NOT OCL_OPENCV_INCLUDE_DIR)
  message(FATAL_ERROR "OpenCV headers (opencv2/core.hpp) not found: install libopencv-core-dev")
endif()
add_library(ocl::opencv INTERFACE IMPORTED)
set_target_properties(ocl::opencv PROPERTIES
  INTERFACE_LINK_LIBRARIES "${_ocl_opencv_libs}"
  INTERFACE_INCLUDE_DIRECTORIES "${OCL_OPENCV_INCLUDE_DIR}")
unset(_ocl_opencv_libs)
