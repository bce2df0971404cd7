# evhttp must not come back (issue 9): libevent's evhttp answered malformed HTTP with HTML,
# accepted smuggling classes and had a single read timeout. Every binary serves HTTP through
# common/http/http_server.c. This check fails when
#   - a source of the binaries (common/, services/) includes event2/http.h or names evhttp_, or
#   - a built binary imports an evhttp_ symbol from libevent (nm -D: a use that slipped in
#     through another header or a macro).
# The bench's trivial_server.c (tests/bench/api) is the fixed evhttp reference and is not a
# binary of the project: it is not checked.
# Inputs: SOURCE_DIR, BINARIES (a ;-list of paths), NM.
file(GLOB_RECURSE sources ${SOURCE_DIR}/common/*.c ${SOURCE_DIR}/common/*.h ${SOURCE_DIR}/services/*.c
     ${SOURCE_DIR}/services/*.h)
set(found "")
foreach(source ${sources})
  file(STRINGS ${source} hits REGEX "event2/http\\.h|evhttp_")
  if(hits)
    file(RELATIVE_PATH rel ${SOURCE_DIR} ${source})
    list(APPEND found "${rel}: ${hits}")
  endif()
endforeach()
list(LENGTH sources source_count)
if(source_count LESS 20)
  message(FATAL_ERROR "no_evhttp: only ${source_count} sources found under ${SOURCE_DIR}; wrong SOURCE_DIR?")
endif()
foreach(binary ${BINARIES})
  execute_process(COMMAND ${NM} -D --undefined-only ${binary} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "no_evhttp: ${NM} failed on ${binary}")
  endif()
  string(REGEX MATCHALL "evhttp_[A-Za-z0-9_]+" imported "${symbols}")
  if(imported)
    list(APPEND found "${binary} imports ${imported}")
  endif()
  # The check must be able to fail: the binary does import libevent's event_ functions.
  if(NOT symbols MATCHES "event_base_")
    message(FATAL_ERROR "no_evhttp: ${binary} imports no event_base_ symbol; is nm reading it?")
  endif()
endforeach()
if(found)
  string(REPLACE ";" "\n  " listing "${found}")
  message(FATAL_ERROR "evhttp is back (use common/http/http_server.h):\n  ${listing}")
endif()
list(LENGTH BINARIES binary_count)
message(STATUS "no_evhttp: ${source_count} sources and ${binary_count} binaries, no evhttp")
