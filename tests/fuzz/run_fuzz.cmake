# Runs one libFuzzer target for a bounded time on a fresh corpus (cmake -P).
# Inputs: FUZZER (binary), TARGET (name), SECONDS, SOURCE_DIR, WORK_DIR.
#
# The corpus is made anew each run from proto/vectors/** (every file) and
# tests/fuzz/seeds/<target>/, so runs do not depend on one another. A crash,
# leak, sanitizer report or timeout makes libFuzzer exit non-zero and leaves
# the input in WORK_DIR as crash-*/leak-*/timeout-*; this script then fails.
#
# A longer run by hand, keeping its corpus (build/fuzz from tests/run or
#   CC=clang-14 cmake -S . -B build/fuzz -G Ninja -DPROFILED_FUZZ=ON):
#   mkdir -p /tmp/corpus && cp tests/fuzz/seeds/fuzz_transcode/* /tmp/corpus/
#   build/fuzz/tests/fuzz/fuzz_transcode -max_total_time=3600 -jobs=$(nproc) \
#       -dict=tests/fuzz/fuzz_transcode.dict /tmp/corpus
# or through ctest: cmake -DPROFILED_FUZZ_SECONDS=600 build/fuzz && ctest --test-dir build/fuzz -L fuzz
file(REMOVE_RECURSE ${WORK_DIR})
set(corpus ${WORK_DIR}/corpus)
file(MAKE_DIRECTORY ${corpus})

file(GLOB_RECURSE seeds ${SOURCE_DIR}/proto/vectors/* ${SOURCE_DIR}/tests/fuzz/seeds/${TARGET}/*)
set(count 0)
foreach(seed ${seeds})
  # Flatten the tree: vectors/valid/x.msgpack becomes valid_x.msgpack.
  file(RELATIVE_PATH rel ${SOURCE_DIR} ${seed})
  string(REPLACE "/" "_" flat ${rel})
  file(COPY_FILE ${seed} ${corpus}/${flat})
  math(EXPR count "${count} + 1")
endforeach()
message(STATUS "${TARGET}: ${count} seed files, ${SECONDS} s")

set(args -max_total_time=${SECONDS} -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
         -artifact_prefix=${WORK_DIR}/)
if(EXISTS ${SOURCE_DIR}/tests/fuzz/${TARGET}.dict)
  list(APPEND args -dict=${SOURCE_DIR}/tests/fuzz/${TARGET}.dict)
endif()
execute_process(COMMAND ${FUZZER} ${args} ${corpus} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB artifacts ${WORK_DIR}/crash-* ${WORK_DIR}/leak-* ${WORK_DIR}/timeout-* ${WORK_DIR}/oom-*)
  message(FATAL_ERROR "${TARGET} failed (exit ${rc}); reproduce with: ${FUZZER} ${artifacts}")
endif()
