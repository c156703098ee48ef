# C code for schemas/ is generated into the build tree at build time.
#
# protobuf-c 1.4.1 (Debian 12) predates proto3 `optional`. A proto3 optional
# field is, on the wire and in presence semantics, a oneof with one member, so
# the public contract keeps `optional` (what publishers in other languages
# compile) and protoc-c is given a copy where each `optional T f = N;` reads
# `oneof f_presence { T f = N; }`.
set(AQ_PROTO_DIR ${CMAKE_SOURCE_DIR}/schemas)
set(AQ_PROTO_FILES agentq/v1/task.proto agentq/v1/result.proto agentq/v1/run.proto)
set(AQ_PROTO_COPY ${CMAKE_BINARY_DIR}/proto-src)
set(AQ_PROTO_OUT  ${CMAKE_BINARY_DIR}/proto-gen)

set(_gen_sources)
set(_copies)
foreach(p ${AQ_PROTO_FILES})
  string(REGEX REPLACE "\\.proto$" "" base ${p})
  add_custom_command(
    OUTPUT ${AQ_PROTO_COPY}/${p}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${AQ_PROTO_COPY}/agentq/v1
    COMMAND sed -E "s/^([[:space:]]*)optional ([a-z0-9_]+) ([a-z0-9_]+) = ([0-9]+)\;/\\1oneof \\3_presence { \\2 \\3 = \\4\; }/"
            ${AQ_PROTO_DIR}/${p} > ${AQ_PROTO_COPY}/${p}
    DEPENDS ${AQ_PROTO_DIR}/${p}
    VERBATIM)
  list(APPEND _copies ${AQ_PROTO_COPY}/${p})
  list(APPEND _gen_sources ${AQ_PROTO_OUT}/${base}.pb-c.c)
endforeach()

add_custom_command(
  OUTPUT ${_gen_sources}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${AQ_PROTO_OUT}
  COMMAND ${PROTOC_C} --proto_path=${AQ_PROTO_COPY} --c_out=${AQ_PROTO_OUT} ${AQ_PROTO_FILES}
  DEPENDS ${_copies}
  WORKING_DIRECTORY ${AQ_PROTO_COPY}
  VERBATIM)

add_library(aq_proto STATIC ${_gen_sources})
target_include_directories(aq_proto SYSTEM PUBLIC ${AQ_PROTO_OUT})
target_link_libraries(aq_proto PUBLIC PkgConfig::PROTOBUFC)
set_target_properties(aq_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
if(AQ_SANITIZE)
  target_compile_options(aq_proto PRIVATE ${AQ_SANITIZE_FLAGS})
endif()
