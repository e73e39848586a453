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
  /**
   * Super-frames (TSO/GRO, up to 64 KiB). The ring asks for the virtio-net header
   * (PACKET_VNET_HDR): the kernel writes it in the kVnetLen bytes before each frame's MAC header
   * (vnetOf()). Its slots stay sized for the MTU: a frame larger than a slot is handed over whole
   * through the socket instead (PACKET_COPY_THRESH): its slot carries TP_STATUS_COPY and a cut
   * copy, and the whole frame is next in the socket's receive queue (readCopy()), in ring order.
   * Slots sized for 64 KiB would cost ~32x the ring's memory for the same number of frames (or a
   * 32x shorter ring), for frames that come in bursts of a few per window; one copy and one
   * recv() per super-frame is amortised over its ~44 segments.
   */
  bool vnet() const { return vnet_; }
  /** The virtio_net_hdr of a slot's frame (vnet() only). */
  const uint8_t* vnetOf(const tpacket2_hdr* h) const {
    return reinterpret_cast<const uint8_t*>(h) + h->tp_mac - kVnetLen;
  }
  /**
   * The next whole frame of a TP_STATUS_COPY slot, read from the socket: *vnetOut (vnet() only)
   * gets its header, frame/frameCap its bytes; its length, or 0 when it is not there or does not
   * fit (the caller counts it truncated).
   */
  uint32_t readCopy(uint8_t* vnetOut, uint8_t* frame, uint32_t frameCap);
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
  bool vnet_ = false;
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
  /**
   * The socket has PACKET_VNET_HDR: every frame it sends carries a virtio_net_hdr (TxEntry::vnet,
   * zeros for an ordinary frame), so a super-frame leaves whole and the kernel (or the NIC's
   * TSO) segments it and completes a partial checksum.
   */
  bool vnet() const { return vnet_; }
  /** Sends one frame now (ARP from the control plane); vnet: its header (null: an ordinary frame). */
  bool sendOne(const uint8_t* data, uint32_t len, const uint8_t* vnet = nullptr);
  /** Sends a batch with sendmmsg; ok[i] = 1 for every frame the kernel accepted. */
  void sendBatch(TxEntry* entries, uint32_t n, uint8_t* ok);
  uint64_t syscalls = 0;
  int lastErrno = 0;

 private:
  int fd_ = -1;
  bool vnet_ = false;
  struct mmsghdr msgs_[kBatch];
  struct iovec iov_[2 * kBatch];
};

}  // namespace lbd
