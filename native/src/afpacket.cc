#include "afpacket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "libpcap.h"

namespace lbd {

static std::string sysErr(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool lookupInterface(const std::string& name, Interface* out, std::string* err, bool loopbackOk) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    *err = "invalid interface name \"" + name + "\"";
    return false;
  }
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) {
    *err = "interface \"" + name + "\" does not exist";
    return false;
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *err = sysErr("socket");
    return false;
  }
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) {
    *err = sysErr("SIOCGIFHWADDR");
    ::close(s);
    return false;
  }
  const bool loopback = ifr.ifr_hwaddr.sa_family == ARPHRD_LOOPBACK;
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER && !(loopback && loopbackOk)) {
    *err = "interface \"" + name + "\" is not Ethernet (ARPHRD " + std::to_string(ifr.ifr_hwaddr.sa_family) + ")";
    ::close(s);
    return false;
  }
  std::memcpy(out->mac, ifr.ifr_hwaddr.sa_data, 6);
  std::memset(&ifr.ifr_ifru, 0, sizeof ifr.ifr_ifru);
  if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) out->mtu = static_cast<uint32_t>(ifr.ifr_mtu);
  ::close(s);
  out->name = name;
  out->index = static_cast<int>(idx);
  out->loopback = loopback;
  return true;
}

bool compileFilter(const std::string& expr, std::vector<sock_filter>* out, std::string* err) {
  return pcap::compile(expr, out, err);
}

static bool attachFilter(int fd, const std::vector<sock_filter>& filter, std::string* err) {
  struct sock_fprog fprog;
  fprog.len = static_cast<unsigned short>(filter.size());
  fprog.filter = const_cast<sock_filter*>(filter.data());
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0) {
    *err = sysErr("SO_ATTACH_FILTER");
    return false;
  }
  return true;
}

bool RxRing::open(const Interface& itf, const std::vector<sock_filter>& filter, size_t ringBytes, bool ignoreOutgoing,
                  std::string* err) {
  close();
  // Protocol 0: the socket receives nothing until bind(), so no frame slips in before the
  // filter and the ring are in place.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *err = sysErr("socket(AF_PACKET)") + (errno == EPERM ? " (lbd needs root or CAP_NET_RAW)" : "");
    return false;
  }
  int v = TPACKET_V2;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) {
    *err = sysErr("PACKET_VERSION");
    ::close(fd);
    return false;
  }
  if (!attachFilter(fd, filter, err)) {
    ::close(fd);
    return false;
  }
  // Our own forwarded frames (egress == capture) are not for us: skip them in the kernel.
  v = 1;
  if (ignoreOutgoing) (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &v, sizeof v);
  // The virtio-net header of every frame (before PACKET_RX_RING: refused afterwards). Without it
  // (a kernel that refuses it) a super-frame could not be passed on as one: vnet() says so.
  v = 1;
  const bool vnet = setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &v, sizeof v) == 0;
  // A frame larger than a slot: its whole skb is queued to the socket as well (TP_STATUS_COPY),
  // as long as the socket's receive buffer has room; then a cut slot is all there is
  // (counted truncated). The buffer is a limit, not an allocation: room for ~100 super-frames
  // (a GRO skb's truesize is up to ~2x its length) waiting behind the ring.
  v = 1;
  (void)setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &v, sizeof v);
  v = 16 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);

  // Frame: tpacket2_hdr + sockaddr_ll + alignment (the MAC header starts at offset 66, 76 with
  // the virtio-net header), then the frame itself; a power of two that holds MTU + Ethernet
  // header + a VLAN tag. Larger frames come through the socket (PACKET_COPY_THRESH above).
  uint32_t need = 128 + kVnetLen + itf.mtu + 18;
  uint32_t frameSize = 2048;
  while (frameSize < need) frameSize <<= 1;
  uint32_t blockSize = frameSize > (1u << 17) ? frameSize : (1u << 17);
  if (ringBytes < blockSize) ringBytes = blockSize;
  uint32_t blocks = static_cast<uint32_t>((ringBytes + blockSize - 1) / blockSize);
  struct tpacket_req req;
  req.tp_block_size = blockSize;
  req.tp_block_nr = blocks;
  req.tp_frame_size = frameSize;
  req.tp_frame_nr = blocks * (blockSize / frameSize);
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
    *err = sysErr("PACKET_RX_RING");
    ::close(fd);
    return false;
  }
  size_t len = size_t(blockSize) * blocks;
  void* map = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (map == MAP_FAILED) {
    *err = sysErr("mmap(PACKET_RX_RING)");
    ::close(fd);
    return false;
  }
  struct sockaddr_ll sll;
  std::memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = itf.index;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sll), sizeof sll) < 0) {
    *err = sysErr("bind(AF_PACKET)");
    munmap(map, len);
    ::close(fd);
    return false;
  }
  fd_ = fd;
  map_ = static_cast<uint8_t*>(map);
  mapLen_ = len;
  frameSize_ = frameSize;
  frameCount_ = req.tp_frame_nr;
  vnet_ = vnet;
  cursor = 0;
  return true;
}

uint32_t RxRing::readCopy(uint8_t* vnetOut, uint8_t* frame, uint32_t frameCap) {
  if (fd_ < 0) return 0;
  uint8_t skip[kVnetLen];
  struct iovec iov[2];
  int n = 0;
  if (vnet_) iov[n++] = {vnetOut != nullptr ? vnetOut : skip, kVnetLen};
  iov[n++] = {frame, frameCap};
  struct msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  for (;;) {
    // MSG_TRUNC: the frame's real length, so that one that does not fit is seen cut.
    ssize_t r = recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_TRUNC);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return 0;
    const uint64_t hdr = vnet_ ? kVnetLen : 0;
    if (uint64_t(r) < hdr || uint64_t(r) - hdr > frameCap || (msg.msg_flags & MSG_TRUNC)) return 0;
    return static_cast<uint32_t>(uint64_t(r) - hdr);
  }
}

bool RxRing::setFilter(const std::vector<sock_filter>& filter, std::string* err) {
  if (fd_ < 0) {
    *err = "capture not open";
    return false;
  }
  return attachFilter(fd_, filter, err);
}

void RxRing::readStats(uint64_t* packets, uint64_t* drops) {
  *packets = 0;
  *drops = 0;
  if (fd_ < 0) return;
  struct tpacket_stats st;
  socklen_t l = sizeof st;
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &l) == 0) {
    *packets = st.tp_packets;
    *drops = st.tp_drops;
  }
}

void RxRing::close() {
  if (map_) munmap(map_, mapLen_);
  map_ = nullptr;
  mapLen_ = 0;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  frameCount_ = 0;
  vnet_ = false;
}

bool TxSocket::open(const Interface& itf, bool bypassQdisc, std::string* err) {
  close();
  // Protocol 0: a send-only socket, never handed received frames.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = sysErr("socket(AF_PACKET)") + (errno == EPERM ? " (lbd needs root or CAP_NET_RAW)" : "");
    return false;
  }
  struct sockaddr_ll sll;
  std::memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = 0;
  sll.sll_ifindex = itf.index;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sll), sizeof sll) < 0) {
    *err = sysErr("bind(AF_PACKET)");
    ::close(fd);
    return false;
  }
  // Every frame sent carries a virtio-net header: a super-frame leaves whole (segmented by the
  // kernel or the NIC), a partial checksum is completed there.
  int v = 1;
  vnet_ = setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &v, sizeof v) == 0;
  // Straight to the driver: no qdisc for frames that are already on their way.
  v = 1;
  if (bypassQdisc) (void)setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &v, sizeof v);
  v = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  fd_ = fd;
  for (uint32_t i = 0; i < kBatch; i++) {
    std::memset(&msgs_[i], 0, sizeof msgs_[i]);
    msgs_[i].msg_hdr.msg_iov = &iov_[2 * i];
    msgs_[i].msg_hdr.msg_iovlen = vnet_ ? 2 : 1;
  }
  return true;
}

void TxSocket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  vnet_ = false;
}

bool TxSocket::sendOne(const uint8_t* data, uint32_t len, const uint8_t* vnet) {
  if (fd_ < 0) return false;
  static const uint8_t kZeroVnet[kVnetLen] = {0};
  struct iovec iov[2];
  int n = 0;
  if (vnet_) iov[n++] = {const_cast<uint8_t*>(vnet != nullptr ? vnet : kZeroVnet), kVnetLen};
  iov[n++] = {const_cast<uint8_t*>(data), len};
  struct msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = n;
  for (;;) {
    syscalls++;
    ssize_t r = ::sendmsg(fd_, &msg, 0);
    if (r >= 0) return true;
    if (errno == EINTR) continue;
    lastErrno = errno;
    return false;
  }
}

void TxSocket::sendBatch(TxEntry* entries, uint32_t n, uint8_t* ok) {
  if (fd_ < 0) return;
  for (uint32_t i = 0; i < n; i++) {
    struct iovec* v = &iov_[2 * i];
    if (vnet_) {
      v->iov_base = entries[i].vnet;
      v->iov_len = kVnetLen;
      v++;
    }
    v->iov_base = entries[i].data;
    v->iov_len = entries[i].len;
  }
  uint32_t off = 0;
  while (off < n) {
    syscalls++;
    int r = sendmmsg(fd_, msgs_ + off, n - off, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      // The first message of the rest was refused: count it and go on with the others.
      lastErrno = errno;
      off++;
      continue;
    }
    if (r == 0) {  // cannot happen with n - off > 0; never spin on it
      off++;
      continue;
    }
    for (int i = 0; i < r; i++) ok[off + i] = 1;
    off += static_cast<uint32_t>(r);
  }
}

}  // namespace lbd
