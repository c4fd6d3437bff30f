// Provides std::ios_base_library_init() (GCC 13, GLIBCXX_3.4.32) for systems whose libstdc++ predates it
// (Debian 12 ships GCC 12). TorchSharp's libLibTorchSharp.so references the symbol only to pin the
// libstdc++ version; what the symbol stands for is "iostreams are initialized", which a static
// std::ios_base::Init here guarantees as soon as this library is loaded.
#include <ios>

namespace {
std::ios_base::Init bupo_ios_init;
}

namespace std {
__attribute__((visibility("default"))) void ios_base_library_init() {
    static ios_base::Init init;
}
}
