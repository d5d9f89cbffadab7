# The c10m_native addon. One source file per function family; add a family by
# adding its file to "sources" and its Init call to src/addon.cc.
#
# C10M_ASAN=1 in the environment builds with AddressSanitizer (see README.md,
# "AddressSanitizer"); the result then only loads with libasan preloaded.
{
  "variables": {
    "c10m_asan%": "<!(node -p \"process.env.C10M_ASAN === '1' ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "c10m_native",
      "sources": [
        "src/addon.cc",
        "src/arena.cc",
        "src/reuseport.cc",
        "src/limits.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      # Never unloaded: an arena's deleter (ReleaseMapping) runs when the last
      # isolate holding the buffer lets go, which can be after the thread that
      # loaded the addon ended and Node dlclose()d it.
      "ldflags": ["-Wl,-z,nodelete"],
      "conditions": [
        ["c10m_asan == 1", {
          "cflags_cc": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1"],
          "ldflags": ["-fsanitize=address"]
        }]
      ]
    }
  ]
}
