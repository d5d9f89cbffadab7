# benchsub's epoll client (bench/loadgen/src/loadgen.cc), an addon of its own
# so that the server never loads it and native-io/ holds only the server's
# native layer. It shares native-io/src/errors.h, the errors every c10m addon
# throws. Built at `npm install` by bench/loadgen/build.js.
#
# C10M_ASAN=1 in the environment builds with AddressSanitizer, as for
# native-io (see native-io/README.md, "AddressSanitizer").
{
  "variables": {
    "c10m_asan%": "<!(node -p \"process.env.C10M_ASAN === '1' ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "c10m_loadgen",
      "sources": ["src/loadgen.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "../../native-io/src"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"],
      "cflags_cc": ["-std=c++17", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [
        ["c10m_asan == 1", {
          "cflags_cc": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1"],
          "ldflags": ["-fsanitize=address"]
        }]
      ]
    }
  ]
}
