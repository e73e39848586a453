// What the addon uses of libpcap: its filter compiler, nothing else. libpcap is dlopen()ed at
// run time and these few declarations are our own instead of <pcap/pcap.h>, so that building
// the addon needs no libpcap-dev, cross-building it needs no libpcap of the target, and one
// binary works with whichever libpcap soname the host has.
#pragma once
#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lbd {
namespace pcap {

/** DLT_EN10MB: Ethernet framing for the compiled filter. */
constexpr int kDltEn10mb = 1;
/** PCAP_NETMASK_UNKNOWN: the filters use no "ip broadcast". */
constexpr uint32_t kNetmaskUnknown = 0xffffffffu;

/** The sonames tried in order: Debian's libpcap0.8 package, other distributions', the -dev link. */
constexpr const char* kSonames[] = {"libpcap.so.0.8", "libpcap.so.1", "libpcap.so"};
/** What to install when none of them loads (Debian's package name). */
constexpr const char* kPackage = "libpcap0.8";

/** struct bpf_program: bf_insns are struct bpf_insn, which is the kernel's sock_filter layout. */
struct Program {
  unsigned int len;
  sock_filter* insns;
};

/** Loads libpcap once; the soname that loaded, or nullptr with *err saying what to install. */
const char* load(std::string* err);

/** pcap_compile on a dead Ethernet handle: the classic BPF program for SO_ATTACH_FILTER. */
bool compile(const std::string& expr, std::vector<sock_filter>* out, std::string* err);

}  // namespace pcap
}  // namespace lbd
