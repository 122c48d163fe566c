# Defines ocl::opencv, an imported target for the OpenCV modules ocl uses: core and imgproc
# (resizing, the synthetic data set's drawing), and imgcodecs when OCL_WITH_IMGCODECS allows
# (AUTO: when found; ON: required; OFF: never). imgcodecs only adds formats other than JPEG and
# PNG (which ocl decodes through libjpeg-turbo and libspng in every build), and on Debian it
# brings ~200 MB of libraries (GDAL and its world) that the GPU kit leaves out. OCL_IMGCODECS_USED
# says whether it was linked; the sources that care get OCL_WITH_IMGCODECS=1 defined (per file:
# a definition on the whole library would no longer match the precompiled header the apps and
# tests reuse).
#
# The headers and libraries are looked up directly first: Debian's libopencv-*-dev packages
# ship no OpenCVConfig.cmake (libopencv-dev does, and pulls a GUI stack), and an OpenCVConfig.cmake
# refuses to load when any module it lists is missing (a kit or a partial install). A config is
# the fallback, for an OpenCV installed elsewhere from source. Included by ocl's own build and
# by the installed oclConfig.cmake.
if(TARGET ocl::opencv)
  return()
endif()
if(NOT DEFINED OCL_WITH_IMGCODECS)
  set(OCL_WITH_IMGCODECS AUTO)
endif()
string(TOUPPER "${OCL_WITH_IMGCODECS}" _ocl_imgcodecs_mode)
if(NOT _ocl_imgcodecs_mode MATCHES "^(AUTO|ON|OFF|TRUE|FALSE|YES|NO|1|0)$")
  message(FATAL_ERROR "OCL_WITH_IMGCODECS must be AUTO, ON or OFF, got '${OCL_WITH_IMGCODECS}'")
endif()
set(_ocl_imgcodecs_wanted ON)
set(_ocl_imgcodecs_required OFF)
if(_ocl_imgcodecs_mode MATCHES "^(OFF|FALSE|NO|0)$")
  set(_ocl_imgcodecs_wanted OFF)
elseif(NOT _ocl_imgcodecs_mode STREQUAL "AUTO")
  set(_ocl_imgcodecs_required ON)
endif()

find_path(OCL_OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
find_library(OCL_OPENCV_core_LIBRARY NAMES opencv_core)
find_library(OCL_OPENCV_imgproc_LIBRARY NAMES opencv_imgproc)
set(_ocl_opencv_libs "")
set(_ocl_opencv_includes "")
set(OCL_IMGCODECS_USED OFF)
if(OCL_OPENCV_INCLUDE_DIR AND OCL_OPENCV_core_LIBRARY AND OCL_OPENCV_imgproc_LIBRARY)
  set(_ocl_opencv_libs "${OCL_OPENCV_core_LIBRARY};${OCL_OPENCV_imgproc_LIBRARY}")
  set(_ocl_opencv_includes "${OCL_OPENCV_INCLUDE_DIR}")
  if(_ocl_imgcodecs_wanted)
    find_library(OCL_OPENCV_imgcodecs_LIBRARY NAMES opencv_imgcodecs)
    if(OCL_OPENCV_imgcodecs_LIBRARY AND EXISTS "${OCL_OPENCV_INCLUDE_DIR}/opencv2/imgcodecs.hpp")
      list(APPEND _ocl_opencv_libs "${OCL_OPENCV_imgcodecs_LIBRARY}")
      set(OCL_IMGCODECS_USED ON)
    endif()
  endif()
else()
  find_package(OpenCV QUIET CONFIG COMPONENTS core imgproc OPTIONAL_COMPONENTS imgcodecs)
  if(NOT OpenCV_FOUND)
    message(FATAL_ERROR "OpenCV core and imgproc not found (headers: "
                        "'${OCL_OPENCV_INCLUDE_DIR}', libraries: '${OCL_OPENCV_core_LIBRARY}', "
                        "'${OCL_OPENCV_imgproc_LIBRARY}'): install libopencv-core-dev and "
                        "libopencv-imgproc-dev (bash scripts/install-deps.sh), or give the GPU "
                        "kit's folder in CMAKE_PREFIX_PATH (scripts/make-gpu-kit.sh)")
  endif()
  set(_ocl_opencv_libs opencv_core opencv_imgproc)
  set(_ocl_opencv_includes "${OpenCV_INCLUDE_DIRS}")
  if(_ocl_imgcodecs_wanted AND TARGET opencv_imgcodecs)
    list(APPEND _ocl_opencv_libs opencv_imgcodecs)
    set(OCL_IMGCODECS_USED ON)
  endif()
endif()
if(_ocl_imgcodecs_required AND NOT OCL_IMGCODECS_USED)
  message(FATAL_ERROR "OCL_WITH_IMGCODECS=ON but OpenCV's imgcodecs was not found: install "
                      "libopencv-imgcodecs-dev, or build with -DOCL_WITH_IMGCODECS=AUTO or OFF "
                      "(JPEG and PNG are read either way)")
endif()

add_library(ocl::opencv INTERFACE IMPORTED)
set_target_properties(ocl::opencv PROPERTIES
  INTERFACE_LINK_LIBRARIES "${_ocl_opencv_libs}"
  INTERFACE_INCLUDE_DIRECTORIES "${_ocl_opencv_includes}")
unset(_ocl_opencv_libs)
unset(_ocl_opencv_includes)
unset(_ocl_imgcodecs_mode)
unset(_ocl_imgcodecs_wanted)
unset(_ocl_imgcodecs_required)
