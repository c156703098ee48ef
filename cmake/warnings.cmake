# Warnings and sanitizers are properties of targets (aq_target_defaults), not
# global flags, so third-party and generated code is not held to them.
# No -Wcast-qual: protobuf-c messages hold `char *` for strings we only borrow.
set(AQ_WARNING_FLAGS
  -Wall -Wextra -Wshadow $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes>
  $<$<COMPILE_LANGUAGE:C>:-Wmissing-prototypes> $<$<COMPILE_LANGUAGE:CXX>:-Wmissing-declarations>
  -Wpointer-arith -Wformat=2 -Wundef -Wvla -Wnull-dereference
  -Wimplicit-fallthrough)
if(AQ_WERROR)
  list(APPEND AQ_WARNING_FLAGS -Werror)
endif()

set(AQ_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)

function(aq_target_defaults target)
  target_compile_options(${target} PRIVATE ${AQ_WARNING_FLAGS})
  target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
  if(AQ_SANITIZE)
    target_compile_options(${target} PRIVATE ${AQ_SANITIZE_FLAGS})
    target_link_options(${target} PUBLIC ${AQ_SANITIZE_FLAGS})
  endif()
endfunction()
