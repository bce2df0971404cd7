# One authority per rule (issue 14): each of these is written once, in common/, and
# every other file of the binaries (common/, services/) calls it. This check fails
# when a copy comes back:
#   abort()                        only in common/wire/xalloc.c (fatal_abort, xmalloc...:
#                                  a fatal JSON line through the logger, then abort)
#   clock_gettime(CLOCK_MONOTONIC  only in common/runtime/clock.c (clock_mono_us...)
#   a hex digit table              only in common/wire/hex.c
#   rd_kafka_conf_set_log_cb       only in common/runtime/kafka_log.c
#   "enable.idempotence", "true"   only in common/runtime/kafka_conf.c
# KNOWN lists the sites not moved yet, each with its file and count: they are reported
# and tolerated, and a KNOWN entry whose site is gone is reported as stale (delete it).
# Condition-variable deadlines (pthread_cond_timedwait on a CLOCK_MONOTONIC condvar)
# need a timespec of that clock, so the files that set such a condvar are KNOWN too.
# Inputs: SOURCE_DIR.
cmake_policy(VERSION 3.25)
set(rules
  "abort\\(\\)|common/wire/xalloc.c"
  "clock_gettime\\(CLOCK_MONOTONIC|common/runtime/clock.c"
  "0123456789abcdef|common/wire/hex.c"
  "rd_kafka_conf_set_log_cb|common/runtime/kafka_log.c"
  "\"enable\\.idempotence\", \"true\"|common/runtime/kafka_conf.c")
# "file|pattern index|count|why"
set(known
  "services/worker/kcopy.c|1|1|a pthread_cond_timedwait deadline on its CLOCK_MONOTONIC condvar"
  "services/worker/lag.c|1|1|a pthread_cond_timedwait deadline on its CLOCK_MONOTONIC condvar")

file(GLOB_RECURSE sources ${SOURCE_DIR}/common/*.c ${SOURCE_DIR}/common/*.h ${SOURCE_DIR}/services/*.c
     ${SOURCE_DIR}/services/*.h)
list(LENGTH sources source_count)
if(source_count LESS 20)
  message(FATAL_ERROR "one_authority: only ${source_count} sources under ${SOURCE_DIR}; wrong SOURCE_DIR?")
endif()

set(found "")
set(tolerated "")
set(tolerated_keys "")
set(authorities_seen 0)
list(LENGTH rules rule_count)
math(EXPR last_rule "${rule_count} - 1")
foreach(index RANGE ${last_rule})
  list(GET rules ${index} rule)
  string(REGEX REPLACE "\\|[^|]*$" "" pattern "${rule}")
  string(REGEX REPLACE "^.*\\|" "" home "${rule}")
  foreach(source ${sources})
    file(RELATIVE_PATH rel ${SOURCE_DIR} ${source})
    file(STRINGS ${source} lines)
    set(hits 0)
    foreach(line IN LISTS lines)
      # comment lines name the rules; only code counts
      if(line MATCHES "^[ \t]*(/?\\*|//)")
        continue()
      endif()
      if(line MATCHES "${pattern}")
        math(EXPR hits "${hits} + 1")
      endif()
    endforeach()
    if(hits EQUAL 0)
      continue()
    endif()
    if(rel STREQUAL home)
      math(EXPR authorities_seen "${authorities_seen} + 1")
      continue()
    endif()
    set(allowed 0)
    foreach(entry ${known})
      string(REPLACE "|" ";" parts "${entry}")
      list(GET parts 0 known_file)
      list(GET parts 1 known_rule)
      list(GET parts 2 known_count)
      if(known_file STREQUAL rel AND known_rule EQUAL index)
        set(allowed ${known_count})
      endif()
    endforeach()
    if(hits GREATER allowed)
      list(APPEND found "${rel}: ${hits} x '${pattern}' (the one place is ${home})")
    else()
      list(APPEND tolerated "${rel}: ${hits} x '${pattern}'")
      list(APPEND tolerated_keys "${rel}|${index}")
    endif()
  endforeach()
endforeach()

# The check must be able to fail: every authority holds its own pattern.
if(NOT authorities_seen EQUAL rule_count)
  message(FATAL_ERROR "one_authority: found ${authorities_seen} of ${rule_count} authorities; are the patterns right?")
endif()
foreach(entry ${known})
  string(REPLACE "|" ";" parts "${entry}")
  list(GET parts 0 known_file)
  list(GET parts 1 known_rule)
  set(still FALSE)
  if("${known_file}|${known_rule}" IN_LIST tolerated_keys)
    set(still TRUE)
  endif()
  if(NOT still)
    message(STATUS "one_authority: stale KNOWN entry (delete it): ${entry}")
  endif()
endforeach()
foreach(t ${tolerated})
  message(STATUS "one_authority: known, not moved yet: ${t}")
endforeach()
if(found)
  string(REPLACE ";" "\n  " listing "${found}")
  message(FATAL_ERROR "one_authority: a rule is written again outside its one place:\n  ${listing}")
endif()
message(STATUS "one_authority: ${source_count} sources, ${rule_count} rules, no copy")
