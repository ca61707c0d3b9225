{
  "targets": [
    {
      "target_name": "flowtap_native",
      "sources": [
        "src/addon.cc",
        "src/bpf_filter.cc",
        "src/packet_ring.cc",
        "src/af_packet_socket.cc",
        "src/ebpf_util.cc",
        "src/bpf_ring_reader.cc",
        "src/bpf_area_reader.cc",
        "src/ebpf_socket_tracer.cc",
        "src/ebpf_profiler.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      "libraries": ["-lpcap", "-lbpf", "-lelf", "-lz"]
    }
  ]
}
