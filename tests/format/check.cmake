# Run by ctest (cmake -P): fails, naming the files, when any C file is not formatted.
# Inputs: CLANG_FORMAT, SOURCE_DIR.
set(sources)
foreach(dir common services tests proto)
  file(GLOB_RECURSE found ${SOURCE_DIR}/${dir}/*.c ${SOURCE_DIR}/${dir}/*.h)
  list(APPEND sources ${found})
endforeach()
list(SORT sources)
list(LENGTH sources count)
if(count EQUAL 0)
  message(STATUS "format_check: no C files found under ${SOURCE_DIR}")
  return()
endif()

set(bad)
foreach(file ${sources})
  execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror --style=file ${file}
    RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    file(RELATIVE_PATH rel ${SOURCE_DIR} ${file})
    list(APPEND bad ${rel})
  endif()
endforeach()

if(bad)
  list(JOIN bad "\n  " listing)
  message(FATAL_ERROR "format_check: not formatted with clang-format-14 (fix: clang-format-14 -i <file>):\n  ${listing}")
endif()
message(STATUS "format_check: ${count} files formatted")
