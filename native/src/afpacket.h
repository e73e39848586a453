// AF_PACKET plumbing for the live path: a TPACKET_V2 RX ring (PACKET_MMAP) on the capture
// interface with a libpcap-compiled classic BPF filter, and raw send sockets (sendmmsg) bound to
// an interface. V2, not V3: V3 hands blocks over on a timer, which costs latency at low rates
// (libpcap picks V2 in immediate mode for the same reason).
#pragma once
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fastpath.h"

namespace lbd {

struct Interface {
  std::string name;
  int index = 0;
  uint32_t mtu = 1500;
  uint8_t mac[6] = {0};
  bool loopback = false;
};

/**
 * Looks the interface up; false with a reason when it does not exist or is not Ethernet.
 * loopbackOk: lo passes too (Ethernet framing with zero MACs, as libpcap treats it).
 */
bool lookupInterface(const std::string& name, Interface* out, std::string* err, bool loopbackOk = false);

/** Compiles a pcap filter expression for Ethernet (libpcap's compiler, loaded at run time). */
bool compileFilter(const std::string& expr, std::vector<sock_filter>* out, std::string* err);

class RxRing {
 public:
  RxRing() = default;
  // Owns its socket and mmap: a copy would close and unmap them a second time.
  RxRing(const RxRing&) = delete;
  RxRing& operator=(const RxRing&) = delete;
  ~RxRing() { close(); }
  /**
   * ignoreOutgoing: the kernel never queues frames sent from this host (PACKET_IGNORE_OUTGOING);
   * otherwise the filter decides, as with libpcap ("inbound", "outbound").
   */
  bool open(const Interface& itf, const std::vector<sock_filter>& filter, size_t ringBytes, bool ignoreOutgoing,
            std::string* err);
  bool setFilter(const std::vector<sock_filter>& filter, std::string* err);
  void close();
  int fd() const { return fd_; }
  bool isOpen() const { return fd_ >= 0; }
  tpacket2_hdr* frame(uint32_t i) const { return reinterpret_cast<tpacket2_hdr*>(map_ + size_t(i) * frameSize_); }
  uint32_t frameSize() const { return frameSize_; }
  uint32_t frameCount() const { return frameCount_; }
  /** PACKET_STATISTICS since the last call (the kernel resets them on read). */
  void readStats(uint64_t* packets, uint64_t* drops);

  uint32_t cursor = 0;

 private:
  int fd_ = -1;
  uint8_t* map_ = nullptr;
  size_t mapLen_ = 0;
  uint32_t frameSize_ = 0;
  uint32_t frameCount_ = 0;
};

class TxSocket {
 public:
  TxSocket() = default;
  // Owns its socket: a copy would close it a second time.
  TxSocket(const TxSocket&) = delete;
  TxSocket& operator=(const TxSocket&) = delete;
  ~TxSocket() { close(); }
  /**
   * bypassQdisc: straight to the driver (PACKET_QDISC_BYPASS), unseen by other packet sockets;
   * otherwise through the qdisc like libpcap's pcap_sendpacket, so tcpdump shows the frames.
   */
  bool open(const Interface& itf, bool bypassQdisc, std::string* err);
  void close();
  bool isOpen() const { return fd_ >= 0; }
  /** Sends one frame now (ARP from the control plane). */
  bool sendOne(const uint8_t* data, uint32_t len);
  /** Sends a batch with sendmmsg; ok[i] = 1 for every frame the kernel accepted. */
  void sendBatch(TxEntry* entries, uint32_t n, uint8_t* ok);
  uint64_t syscalls = 0;
  int lastErrno = 0;

 private:
  int fd_ = -1;
  struct mmsghdr msgs_[kBatch];
  struct iovec iov_[kBatch];
};

}  // namespace lbd
