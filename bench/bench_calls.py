"""Concurrent calls against SIPp: our user agent vs pyVoIP 1.6.8, same N, same run.

Each call is answered by SIPp (``tests/sip/scenarios/uas_bench.xml``), whose SDP points
our RTP at a measuring sink (a separate process), so pacing is measured outside the
sender; the sink answers each stream with in-band DTMF from the same port (symmetric RTP
keeps our stream pointed at it) for the callers' DTMF detectors. Per stream we report
packets/s (target 50.0, RFC 3551 20 ms ptime) and the p99 inter-arrival time; per call
the CPU and memory of the dialing process; and new calls per second (INVITE burst until
all answered).
A call is healthy when its rate is within 0.1 % of 50/s and its p99 gap is within 1 ms
of the floor measured in the same run: a small C sender (`_FLOOR_C`, built here with
``cc``) paces ``--floor-streams`` streams of its own through the same sink while our
calls are measured, with ``clock_nanosleep`` to absolute deadlines, so its pooled p99 gap
is what this machine's scheduling and loopback allow at that load. Without ``cc`` the
rule falls back to a fixed 22 ms. Streams are told apart by source address and port,
not by SSRC (pyVoIP's SSRCs collide).

The sink and echoing far end is a small C program too (`_SINK_C`, ``--sink c``, the
default): the Python loop (``--sink python``, and without ``cc``) spends about half a core
at 1,000 echoed calls on a recvmsg and a sendto per packet, taken from the two cores the
calls under test run on. It reads its socket every millisecond (kernel stamps keep the
arrival times exact) and echoes a batch with one ``sendmmsg``: a far end that slept on its
socket was woken by every packet, and each of those cross-CPU wake-ups was paid inside
the ``sendto`` of the calls under test, which a far end on another machine never costs
them. With ``--workers`` the workers wait for each other at the
window's start and end in a thread, so no worker's pacing stops meanwhile (a blocked loop
used to send nothing until the last worker arrived and then catch up inside the window).

pyVoIP is the baseline named in DESIGN.md §3 (``import pyVoIP`` happens only here).
Our calls also run in-band DTMF detection on what SIPp sends; pyVoIP has no detector,
so the baseline does less work per call.

The far end (``--far-end``) either sends its DTMF burst and then nothing (``burst``,
the load the issue describes), or keeps streaming back every packet it gets (``echo``,
a phone that sends its microphone all through the call), which doubles the packets
each call handles. ``--priority`` runs the calling process, ours and pyVoIP's alike,
at a raised scheduling priority (`autocall.process`, as ``autocall --priority``).

``--amd`` adds answering-machine detection to every one of our calls, as a campaign call
with ``amd:`` runs it (`autocall.telephony.answer`): each call listens through the
process's shared `AmdPool` (one `AmdBank` analysis per 20 ms frame period over all calls, fed
the received signal after G.711 decoding). Listening starts at the answer, as a campaign
starts it (all calls were answered within a second, so their analyses start together),
and when a detector finishes (its decision; for a machine, the message time) the call
starts a new analysis at once, so every call hands one 20 ms frame per tick to the bank
all through the window. (Starting all the analyses in one tick at the window's start,
as this bench once did, stalled the process inside the window and measured that.) With
``--far-end echo`` the calls hear the DTMF burst and then our speech-like prompt back:
the first analysis decides ``human`` (a short greeting) and the next ``machine`` (a long
greeting) and then follows a greeting that does not end within the window (``follow_ms``
30 s); with ``burst`` the far end is silent after its DTMF, the session feeds silence,
and each analysis ends ``unknown`` after the 4 s initial silence and starts again. With
``greeting`` the far end echoes for `GREETING` seconds and then sends silence in the same
packets, as many as before: the load of a campaign whose callees speak and then listen,
where each detector decides (a machine: it follows the greeting to its end), is done,
and the next analysis starts on the silence. A
second line under our row says on how many calls a detector was listening when the
window ended, the decisions of the analyses, and the frames analysed per call per
second (50.0: every frame of every call)::

    python bench/bench_calls.py --calls 500 --far-end echo --amd --skip-baseline

    python bench/bench_calls.py                       # N = 100 and 200, 10 s each
    python bench/bench_calls.py --calls 500 --duration 10 --skip-baseline
    python bench/bench_calls.py --calls 500 --priority realtime --far-end echo
    python bench/bench_calls.py --calls 1000 --far-end echo --workers 2 --skip-baseline
    python bench/bench_calls.py --calls 100 200 1000 --baseline-calls 100 200 \\
        --far-end echo --workers 2
    python bench/bench_calls.py --calls 500 --far-end echo --workers 2 --record
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import heapq
import multiprocessing as mp
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from autocall.telephony.call import Call

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "sip" / "scenarios" / "uas_bench.xml"
SIPP_PORT, SINK_PORT, PYVOIP_SIP_PORT = 21000, 21002, 21010
PYVOIP_RTP = (22000, 23999)
RATE = 8000
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux asm-generic/socket.h
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SETTLE = 2.5  # seconds after the last answer before measuring: the DTMF bursts are over
FLOOR_STREAMS = 20
GREETING = 5.0  # s the far end speaks (echoes) with --far-end greeting: a short voicemail
FIXED_P99 = 0.022  # s: the health rule when no C compiler builds the floor sender
# What `_build_c` puts before each of the C programs below: the headers they use, and a
# way to die with the process that started them (an orphan would send into later runs).
_C_PRELUDE = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die_with_parent(void) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) exit(0); /* it went before the line above */
}
"""
# The floor: N RTP streams (PCMU, 20 ms, RFC 3551) from one process, each from its own
# port, every packet sent at t0 + k * 20 ms with clock_nanosleep(TIMER_ABSTIME), so a
# late wake-up delays one packet and never the ones after it (as our pacing clock).
_FLOOR_C = r"""
static volatile sig_atomic_t stop = 0;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    die_with_parent();
    if (argc != 4) { fprintf(stderr, "usage: floor HOST PORT STREAMS\n"); return 2; }
    int n = atoi(argv[3]);
    if (n < 1 || n > 1000) { fprintf(stderr, "streams: 1..1000\n"); return 2; }
    struct sockaddr_in dst = {0};
    dst.sin_family = AF_INET;
    dst.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
        fprintf(stderr, "bad host\n");
        return 2;
    }
    int *fd = calloc((size_t)n, sizeof *fd);
    for (int i = 0; i < n; i++) {
        struct sockaddr_in me = {0};
        socklen_t len = sizeof me;
        me.sin_family = AF_INET;
        me.sin_addr = dst.sin_addr;
        fd[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd[i] < 0 || bind(fd[i], (struct sockaddr *)&me, sizeof me) < 0
            || getsockname(fd[i], (struct sockaddr *)&me, &len) < 0) { perror("socket"); return 1; }
        printf("%d\n", ntohs(me.sin_port));
    }
    fflush(stdout);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    unsigned char pkt[172];
    memset(pkt, 0xff, sizeof pkt);  /* PCMU silence */
    pkt[0] = 0x80; pkt[1] = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (unsigned k = 0; !stop; k++) {
        for (int i = 0; i < n; i++) {
            unsigned seq = k & 0xffff, ts = k * 160u, ssrc = 0xF1000000u + (unsigned)i;
            pkt[2] = seq >> 8; pkt[3] = seq & 0xff;
            pkt[4] = ts >> 24; pkt[5] = ts >> 16; pkt[6] = ts >> 8; pkt[7] = ts;
            pkt[8] = ssrc >> 24; pkt[9] = ssrc >> 16; pkt[10] = ssrc >> 8; pkt[11] = ssrc;
            sendto(fd[i], pkt, sizeof pkt, 0, (struct sockaddr *)&dst, sizeof dst);
        }
        next.tv_nsec += 20000000L;
        if (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL)) {}
    }
    return 0;
}
"""


def _build_c(workdir: Path, name: str, source: str) -> Path | None:
    """Compile one of the bench's C programs (after `_C_PRELUDE`) with the system C
    compiler; None if there is none."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, exe = workdir / f"{name}.c", workdir / name
    src.write_text(_C_PRELUDE + source)
    done = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True, check=False)
    if done.returncode:
        print(f"{name} did not build: {done.stderr.decode()[-500:]}", file=sys.stderr)
        return None
    return exe


_SINK_C = r"""
/* The measuring sink in C: what bench_calls' Python sink does, at a fraction of the CPU
   it takes from the calls under test on the same cores. */

#define SLOTS 16384 /* open addressing, power of two, > 2 x the streams we ever see */
#define BATCH 64
#define PERIOD 0.02 /* RFC 3551: 20 ms PCMU packets */

struct stream {
    uint64_t key; int used, floor, burst, next; double due, spoke; struct sockaddr_in addr;
};
static struct stream table[SLOTS];
static int bursting[SLOTS], nbursting = 0;
static unsigned char *burst; static int nburst = 0, burstlen = 172;
static uint64_t *keys; static double *times; static size_t nrec = 0, caprec = 0;

static double mono(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9;
}
static struct stream *find(uint64_t key) {
    uint32_t h = (uint32_t)(key * 0x9E3779B97F4A7C15ull >> 40) & (SLOTS - 1);
    while (table[h].used && table[h].key != key) h = (h + 1) & (SLOTS - 1);
    return &table[h];
}
static void record(uint64_t key, double t) {
    if (nrec == caprec) {
        caprec = caprec ? caprec * 2 : 1 << 20;
        keys = realloc(keys, caprec * sizeof *keys); times = realloc(times, caprec * sizeof *times);
        if (!keys || !times) { perror("realloc"); exit(1); }
    }
    keys[nrec] = key; times[nrec++] = t;
}
static void mark_floor(uint64_t key) {
    struct stream *s = find(key);
    if (!s->used) { s->used = 1; s->key = key; }
    s->floor = 1; s->burst = 0; /* the floor sender reads nothing: no burst, no echo */
}

int main(int argc, char **argv) {
    die_with_parent();
    if (argc != 7) {
        fprintf(stderr, "usage: sink PORT BURSTFILE ECHO KEYSOUT TIMESOUT GREETING\n");
        return 2;
    }
    int echo = atoi(argv[3]);
    double greeting = atof(argv[6]); /* > 0: echo that long, then the same packets silent */
    FILE *bf = fopen(argv[2], "rb");
    if (!bf) { perror("burst"); return 1; }
    burst = malloc(4096 * 172);
    nburst = (int)fread(burst, 172, 4096, bf);
    fclose(bf);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 64 << 20, on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0) {
        big = 8 << 20; setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    }
    struct sockaddr_in me = {0};
    me.sin_family = AF_INET; me.sin_port = htons((unsigned short)atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &me.sin_addr);
    if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind"); return 1; }
    /* kernel receive stamps: the sink's own scheduling delays do not count as jitter */
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    printf("ready\n"); fflush(stdout);

    static unsigned char bufs[BATCH][2048];
    static char ctl[BATCH][CMSG_SPACE(sizeof(struct timespec))];
    static struct sockaddr_in from[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    static struct iovec oiov[BATCH];
    static struct mmsghdr out[BATCH]; /* this batch's echoes: one sendmmsg, not n sendto */
    char line[1 << 16]; size_t linelen = 0;
    int recording = 0, more = 0;
    for (;;) {
        double now = mono(), wait = 0.004;
        for (int i = 0; i < nbursting;) { /* paced DTMF bursts, 20 ms a packet */
            struct stream *s = &table[bursting[i]];
            if (!s->burst) { bursting[i] = bursting[--nbursting]; continue; }
            if (s->due <= now) {
                sendto(fd, burst + (size_t)s->next * 172, (size_t)burstlen, 0,
                       (struct sockaddr *)&s->addr, sizeof s->addr);
                s->due += PERIOD;
                if (++s->next >= nburst) {
                    s->burst = 0; bursting[i] = bursting[--nbursting]; continue;
                }
            }
            if (s->due - now < wait) wait = s->due - now;
            i++;
        }
        /* Drained every millisecond, not waited on (why: the module's docstring); kernel
           receive stamps keep the times exact, echoes leave at most 1 ms later. */
        struct pollfd p[2] = {{-1, 0, 0}, {0, POLLIN, 0}};
        int ms = (int)(wait * 1000); if (ms < 0) ms = 0;
        if (ms > 1) ms = 1;
        if (more) ms = 0;
        if (poll(p, 2, ms) < 0 && errno != EINTR) { perror("poll"); return 1; }
        if (p[1].revents) {
            ssize_t got = read(0, line + linelen, sizeof line - 1 - linelen);
            if (got <= 0) return 0; /* the bench went away */
            linelen += (size_t)got; line[linelen] = 0;
            char *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                if (!strncmp(line, "floor", 5)) {
                    char *q = line + 5, *end;
                    for (;;) {
                        unsigned long long k = strtoull(q, &end, 10);
                        if (end == q) break;
                        mark_floor(k); q = end;
                    }
                } else if (!strcmp(line, "start")) {
                    recording = 1;
                } else if (!strcmp(line, "stop")) {
                    FILE *k = fopen(argv[4], "wb"), *t = fopen(argv[5], "wb");
                    if (!k || !t) { perror("out"); return 1; }
                    fwrite(keys, sizeof *keys, nrec, k); fwrite(times, sizeof *times, nrec, t);
                    fclose(k); fclose(t);
                    printf("done\n"); fflush(stdout);
                    return 0;
                }
                size_t used = (size_t)(nl + 1 - line);
                memmove(line, nl + 1, linelen - used + 1); linelen -= used;
            }
        }
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i]; iov[i].iov_len = sizeof bufs[i];
            msgs[i].msg_hdr = (struct msghdr){
                .msg_name = &from[i], .msg_namelen = sizeof from[i], .msg_iov = &iov[i],
                .msg_iovlen = 1, .msg_control = ctl[i], .msg_controllen = sizeof ctl[i]};
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        more = n == BATCH; /* a full batch: read on before sleeping */
        if (n <= 0) continue;
        now = mono();
        int nout = 0;
        for (int i = 0; i < n; i++) {
            unsigned len = msgs[i].msg_len;
            double stamp = 0;
            struct msghdr *h = &msgs[i].msg_hdr;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
                    struct timespec ts; memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    stamp = ts.tv_sec + ts.tv_nsec * 1e-9;
                }
            uint64_t key = (uint64_t)ntohl(from[i].sin_addr.s_addr) << 16 | ntohs(from[i].sin_port);
            struct stream *s = find(key);
            if (!s->used) {
                s->used = 1; s->key = key; s->addr = from[i];
                s->burst = 1; s->next = 0; s->due = now; s->spoke = 0;
                bursting[nbursting++] = (int)(s - table);
            } else if (!s->floor && echo && !s->burst) {
                if (!s->addr.sin_port) s->addr = from[i];
                if (s->spoke == 0) s->spoke = now;
                if (greeting > 0 && now - s->spoke > greeting && len > 12)
                    /* the callee listens: G.711 silence (RFC 3551 PCMU 0xFF, PCMA 0xD5) */
                    memset(bufs[i] + 12, (bufs[i][1] & 0x7F) == 8 ? 0xD5 : 0xFF, len - 12);
                oiov[nout].iov_base = bufs[i]; oiov[nout].iov_len = len;
                out[nout].msg_hdr = (struct msghdr){
                    .msg_name = &from[i], .msg_namelen = sizeof from[i],
                    .msg_iov = &oiov[nout], .msg_iovlen = 1};
                nout++;
            }
            int pt = bufs[i][1] & 0x7F;
            if (recording && len >= 12 && (s->floor || pt == 0 || pt == 8))
                record(key, stamp);
        }
        for (int done = 0; done < nout;) { /* a failed packet is dropped, as sendto did */
            int sent = sendmmsg(fd, out + done, (unsigned)(nout - done), MSG_DONTWAIT);
            done += sent > 0 ? sent : 1;
        }
    }
}
"""


# ``--c-caller``: the least any caller does per call-frame, in C: one sendto and one
# recvmsg with its kernel stamp, the streams spread over 8 slots of the 20 ms frame as our
# engine does, absolute-deadline sleeps, epoll for the reads; no SIP, no detection. Run
# through the same sink, floor and rule, it shows what this machine allows any
# implementation at N echoed calls, and what our Python costs beyond it.
_CALLER_C = r"""static volatile sig_atomic_t stop = 0;
static void on_term(int s) { (void)s; stop = 1; }
int main(int argc, char **argv) {
    die_with_parent();
    if (argc != 4) { fprintf(stderr, "usage: caller HOST PORT STREAMS\n"); return 2; }
    int n = atoi(argv[3]), phases = 8, on = 1;
    if (n < 1 || n > 4000) { fprintf(stderr, "streams: 1..4000\n"); return 2; }
    struct sockaddr_in dst = {0};
    dst.sin_family = AF_INET; dst.sin_port = htons((unsigned short)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &dst.sin_addr);
    int *fd = calloc((size_t)n, sizeof *fd);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct sockaddr_in me = {0}; me.sin_family = AF_INET; me.sin_addr = dst.sin_addr;
        fd[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        bind(fd[i], (struct sockaddr *)&me, sizeof me);
        setsockopt(fd[i], SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev);
    }
    signal(SIGTERM, on_term);
    unsigned char pkt[172], buf[2048]; char ctl[64];
    memset(pkt, 0xff, sizeof pkt); pkt[0] = 0x80; pkt[1] = 0;
    struct epoll_event evs[1024];
    struct timespec next; clock_gettime(CLOCK_MONOTONIC, &next);
    long slot = 20000000L / phases;
    for (unsigned k = 0; !stop; k++) {
        int ph = k % phases; unsigned f = k / phases;
        for (int i = ph; i < n; i += phases) {
            unsigned seq = f & 0xffff, ts = f * 160u, ssrc = 0xC0000000u + (unsigned)i;
            pkt[2] = seq >> 8; pkt[3] = seq; pkt[4] = ts >> 24; pkt[5] = ts >> 16;
            pkt[6] = ts >> 8; pkt[7] = ts; pkt[8] = ssrc >> 24; pkt[9] = ssrc >> 16;
            pkt[10] = ssrc >> 8; pkt[11] = ssrc;
            sendto(fd[i], pkt, sizeof pkt, 0, (struct sockaddr *)&dst, sizeof dst);
        }
        for (int round = 0; round < 8; round++) {
            int m = epoll_wait(ep, evs, 1024, 0);
            if (m <= 0) break;
            for (int j = 0; j < m; j++) {
                struct sockaddr_in from; struct iovec iov = {buf, sizeof buf};
                struct msghdr h = {.msg_name = &from, .msg_namelen = sizeof from,
                                   .msg_iov = &iov, .msg_iovlen = 1,
                                   .msg_control = ctl, .msg_controllen = sizeof ctl};
                recvmsg(fd[evs[j].data.u32], &h, 0);
            }
        }
        next.tv_nsec += slot;
        if (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL)) {}
    }
    return 0;
}
"""


def _addr_key(addr: tuple[str, int]) -> int:
    """A stream's source address and port as one integer (IPv4 << 16 | port)."""
    return int.from_bytes(socket.inet_aton(addr[0]), "big") << 16 | addr[1]


# ---- the sink: receives every stream's RTP, stamps arrival times -------------------------
def _sink(port: int, conn: Connection, burst: list[bytes], echo: bool = False,
          floor: tuple[Path, int] | None = None, greeting: float = 0.0) -> None:
    """Stamp every RTP packet's arrival; answer each new stream with ``burst`` (in-band
    DTMF, paced 20 ms) from this same port, so the caller's symmetric-RTP latch keeps
    pointing here and its DTMF detector has work to do. With ``echo``, every packet is
    also sent back once the burst is over, the way a phone keeps streaming its
    microphone: the caller then receives 50 packets/s per call as well as sending. With
    ``greeting`` (s) as well, what it sends back turns to G.711 silence after that long:
    a callee who spoke and now listens, the packets as many as before.

    With ``floor`` (the C sender, its stream count), that sender runs from "start" to
    "stop" into this same socket; its streams' source keys go back with the stamps."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # root may exceed net.core.rmem_max: no drops while this loop catches up
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", port))
    # Kernel receive time stamps: the sink's own scheduling delays do not count as jitter.
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(0.004)
    keys, times = array("Q"), array("d")
    floor_proc: subprocess.Popen[bytes] | None = None
    floor_keys: list[int] = []
    seen: dict[tuple[str, int], int] = {}  # source address -> its key in `keys`
    bursting: set[tuple[str, int]] = set()
    started: dict[tuple[str, int], float] = {}  # when each stream's echo began
    due: list[tuple[float, int, tuple[str, int]]] = []  # (when, packet index, address)
    recording = False
    n = 0
    conn.send("ready")
    while True:
        n += 1
        if (n % 500 == 0 or not recording) and conn.poll():
            cmd = conn.recv()
            if cmd == "start":
                recording = True
                if floor is not None and floor_proc is None:
                    floor_proc = subprocess.Popen(
                        [str(floor[0]), "127.0.0.1", str(port), str(floor[1])],
                        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                    assert floor_proc.stdout is not None
                    floor_keys = [_addr_key(("127.0.0.1", int(floor_proc.stdout.readline())))
                                  for _ in range(floor[1])]
            elif cmd == "stop":
                break
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, i, addr = heapq.heappop(due)
            sock.sendto(burst[i], addr)
            if i + 1 < len(burst):
                heapq.heappush(due, (now + 0.02, i + 1, addr))
            else:
                bursting.discard(addr)
        try:
            data, anc, _flags, addr = sock.recvmsg(2048, 64)
        except TimeoutError:
            continue
        stamp = time.time()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                stamp = sec + nsec * 1e-9
        if addr not in seen:
            key = seen[addr] = _addr_key(addr)
            if floor_proc is not None and key in floor_keys:
                bursting.add(addr)  # the floor sender reads nothing: no burst, no echo
                if recording and len(data) >= 12:
                    keys.append(key)
                    times.append(stamp)
                continue
            heapq.heappush(due, (time.monotonic(), 0, addr))
            bursting.add(addr)
        elif echo and addr not in bursting:
            spoke = started.setdefault(addr, time.monotonic())
            if greeting and time.monotonic() - spoke > greeting and len(data) > 12:
                data = data[:12] + (b"\xd5" if data[1] & 0x7F == 8 else b"\xff") * (len(data) - 12)
            sock.sendto(data, addr)
        if recording and len(data) >= 12 and (data[1] & 0x7F) in (0, 8):
            keys.append(seen[addr])
            times.append(stamp)
    if floor_proc is not None:
        floor_proc.terminate()
        floor_proc.wait(5)
    conn.send((keys.tobytes(), times.tobytes(), floor_keys))


def _sink_c(exe: Path, port: int, conn: Connection, burst: list[bytes], echo: bool = False,
            floor: tuple[Path, int] | None = None, greeting: float = 0.0) -> None:
    """`_sink`'s work done by the C program `_SINK_C` (same protocol on ``conn``): the
    Python loop takes about half a core at 1,000 echoed calls (a recvmsg and a sendto per
    packet), on the two cores the calls under test need. This process only relays the
    orders and starts the floor sender."""
    work = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    (work / "burst").write_bytes(b"".join(burst))
    proc = subprocess.Popen(
        [str(exe), str(port), str(work / "burst"), str(int(echo)), str(work / "keys"),
         str(work / "times"), str(greeting)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    floor_proc: subprocess.Popen[bytes] | None = None
    floor_keys: list[int] = []
    try:
        if proc.stdout.readline() != b"ready\n":
            raise RuntimeError("the C sink did not start")
        conn.send("ready")
        while (cmd := conn.recv()) != "stop":
            if cmd == "start" and floor is not None and floor_proc is None:
                floor_proc = subprocess.Popen(
                    [str(floor[0]), "127.0.0.1", str(port), str(floor[1])],
                    stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                assert floor_proc.stdout is not None
                floor_keys = [_addr_key(("127.0.0.1", int(floor_proc.stdout.readline())))
                              for _ in range(floor[1])]
                proc.stdin.write(f"floor {' '.join(map(str, floor_keys))}\n".encode())
            if cmd == "start":
                proc.stdin.write(b"start\n")
                proc.stdin.flush()
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
        if proc.stdout.readline() != b"done\n":
            raise RuntimeError("the C sink did not finish")
        conn.send(((work / "keys").read_bytes(), (work / "times").read_bytes(), floor_keys))
    finally:
        for child in (floor_proc, proc):
            if child is not None and child.poll() is None:
                child.terminate()
                child.wait(5)
        shutil.rmtree(work, ignore_errors=True)



def _burst() -> list[bytes]:
    """RTP packets (PCMU, 20 ms) of the in-band DTMF every stream receives."""
    from autocall.audio import g711
    from autocall.audio.tones import dtmf, silence

    pcm = np.concatenate([silence(300), dtmf("159", on_ms=100, off_ms=100), silence(200)])
    payload = g711.ulaw_encode(pcm)
    packets = []
    for k in range(len(payload) // 160):
        header = bytes([0x80, 0x00]) + k.to_bytes(2, "big") + (k * 160).to_bytes(4, "big")
        packets.append(header + (0x5EED).to_bytes(4, "big") + payload[k * 160 : (k + 1) * 160])
    return packets


@dataclass
class StreamStats:
    streams: int
    pps_mean: float
    pps_min: float
    pps_max: float
    worst_drift_pct: float
    p99_ms: float
    healthy: int
    floor_streams: int = 0
    """Streams of the C floor sender measured in the same run (0: no floor)."""
    floor_pps: float = 0.0
    floor_p99_ms: float = float("nan")
    """Pooled p99 gap of the floor sender's streams: the health rule's reference."""
    limit_ms: float = FIXED_P99 * 1000
    """The p99 gap a healthy call may have: floor p99 + 1 ms (22 ms without a floor)."""


def _groups(keys: np.ndarray, t: np.ndarray) -> dict[int, np.ndarray]:
    """Arrival times per source (address and port), each sorted."""
    order = np.lexsort((t, keys))
    keys, t = keys[order], t[order]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate(([0], bounds))
    return {int(keys[i]): g for i, g in zip(starts, np.split(t, bounds), strict=True)}


def stream_stats(raw: tuple[bytes, bytes, list[int]]) -> StreamStats:
    """Per-stream rate and gaps; health against the floor measured in the same run."""
    keys = np.frombuffer(raw[0], dtype=np.uint64)
    t = np.frombuffer(raw[1], dtype=np.float64)
    floor_keys = set(raw[2])
    none = StreamStats(0, 0, 0, 0, 100.0, float("inf"), 0)
    if len(t) == 0:
        return none
    groups = _groups(keys, t)
    floor = [g for k, g in groups.items() if k in floor_keys and len(g) >= 50]
    limit = FIXED_P99
    floor_pps, floor_p99 = 0.0, float("nan")
    if floor:
        floor_pps = float(np.mean([(len(g) - 1) / (g[-1] - g[0]) for g in floor]))
        floor_p99 = float(np.percentile(np.concatenate([np.diff(g) for g in floor]), 99))
        limit = floor_p99 + 0.001
    pps, gaps, healthy = [], [], 0
    for k, group in groups.items():
        if k in floor_keys or len(group) < 50:
            continue
        rate = (len(group) - 1) / (group[-1] - group[0])
        d = np.diff(group)
        pps.append(rate)
        gaps.append(d)
        if abs(rate - 50) / 50 <= 0.001 and np.percentile(d, 99) <= limit:
            healthy += 1
    if not pps:
        return none
    arr = np.array(pps)
    return StreamStats(len(arr), float(arr.mean()), float(arr.min()), float(arr.max()),
                       float(np.max(np.abs(arr - 50) / 50 * 100)),
                       float(np.percentile(np.concatenate(gaps), 99) * 1000), healthy,
                       len(floor), floor_pps, floor_p99 * 1000, limit * 1000)


@dataclass
class Result:
    name: str
    calls: int
    answered: int
    setup_cps: float
    cpu_pct_per_call: float
    mem_kib_per_call: float
    stats: StreamStats
    digits_per_call: float | None = None
    sender_pps: float | None = None
    """Packets the sender counted per stream per second (cross-checks the sink)."""
    priority: str = "normal"
    """The scheduling priority the calling process got (see autocall.process)."""
    amd: AmdLoad | None = None
    """What AMD did during the window (``--amd``), None without it."""


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) other processes have used, from /proc/PID/stat."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _prompt(seconds: float) -> np.ndarray:
    """Speech-like test audio: band-limited noise with a syllable envelope."""
    rng = np.random.default_rng(7)
    n = int(seconds * RATE)
    noise = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / RATE)
    return (noise * env * 3000).astype(np.int16)


# ---- answering-machine detection on our calls (--amd) -------------------------------------
@dataclass
class AmdLoad:
    calls: int
    active: int
    """Calls whose detector was listening when the window ended."""
    decisions: dict[str, int]
    """Analyses per decision (``answered_by/cause``; ``undecided`` for one cut by the
    window's end), over all calls."""
    frames_per_call_s: float
    """20 ms frames the pool analysed per call per second of the window (50: all)."""
    calls_per_pass: float
    """Frames per bank analysis: how many calls one numpy pass served."""


class _AmdOnCalls:
    """AMD on every call through the process's pool, restarted whenever it finishes."""

    def __init__(self, calls: list[Call]) -> None:
        from autocall.telephony.answer import shared_pool

        self.pool = shared_pool()
        self.stop: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.frames0, self.batches0 = self.pool.frames, self.pool.batches
        self.t0 = time.perf_counter()
        self.tasks = [asyncio.ensure_future(self._listen(c)) for c in calls]

    async def _listen(self, call: Call) -> tuple[list[str], bool]:
        """Analyses of one call until the window ends: their decisions, and whether a
        detector was still listening then."""
        from autocall.audio.amd import AmdDecision, AmdEvent, AmdMessageReady

        def finished(events: list[AmdEvent]) -> bool:
            who = [e.answered_by for e in events if isinstance(e, AmdDecision)]
            if not who:
                return False
            return who[-1] != "machine" or any(isinstance(e, AmdMessageReady) for e in events)

        decisions: list[str] = []
        while True:
            listener = self.pool.listen(call.media)
            try:
                waiting = asyncio.ensure_future(listener.wait_for(finished, None))
                await asyncio.wait({waiting, self.stop}, return_when=asyncio.FIRST_COMPLETED)
                result = listener.result
                if not waiting.done():  # the window ended while this analysis ran
                    waiting.cancel()
                    decisions.append(
                        "undecided"
                        if result.cause == "no-audio"
                        else f"{result.answered_by}/{result.cause}"
                    )
                    return decisions, not self.pool.decided(listener.channel)
                decisions.append(f"{result.answered_by}/{result.cause}")
            finally:
                listener.close()

    async def finish(self) -> AmdLoad:
        """End the analyses (call this when the window ends) and sum them up."""
        frames = self.pool.frames - self.frames0
        batches = self.pool.batches - self.batches0
        seconds = time.perf_counter() - self.t0
        self.stop.set_result(True)
        done = await asyncio.gather(*self.tasks)
        counts: dict[str, int] = {}
        for decisions, _ in done:
            for d in decisions:
                counts[d] = counts.get(d, 0) + 1
        n = len(self.tasks)
        return AmdLoad(
            n,
            sum(active for _, active in done),
            dict(sorted(counts.items())),
            frames / seconds / max(1, n),
            frames / max(1, batches),
        )


# ---- our user agent ----------------------------------------------------------------------
async def _ours(n: int, duration: float, sink: Connection | _Barrier,
                amd: bool = False, record: bool = False) -> Result:
    from autocall.telephony.call import CallStatus, UserAgent

    ua = await UserAgent.start(bind_host="127.0.0.1")
    prompt = _prompt(duration + 5)
    rss0 = _rss_kib()
    t0 = time.perf_counter()
    calls = [await ua.call(f"sip:sipp@127.0.0.1:{SIPP_PORT}", ring_timeout=30)
             for _ in range(n)]
    await asyncio.gather(*(c.wait_answer(40) for c in calls))
    setup = time.perf_counter() - t0
    live = [c for c in calls if c.status is CallStatus.IN_PROGRESS]
    recordings = Path(tempfile.mkdtemp(prefix="bench-rec-")) if record else None
    if recordings is not None:  # as a campaign with `recording: true` does at the answer
        for i, c in enumerate(live):
            c.record(recordings / f"{i}.wav")
    players = [asyncio.ensure_future(c.play(prompt)) for c in live]
    detectors = _AmdOnCalls(live) if amd else None
    await asyncio.sleep(SETTLE)
    # A barrier waits for the other workers: in a thread, so this loop keeps pacing (a
    # blocked loop would send nothing until then, and catch up inside the window).
    await asyncio.to_thread(sink.send, "start")
    sent0 = sum(c.media.stats().packets_sent for c in live)
    cpu0, w0 = _cpu(), time.perf_counter()
    await asyncio.sleep(duration)
    cpu1, w1 = _cpu(), time.perf_counter()
    amd_load = await detectors.finish() if detectors is not None else None
    sent1 = sum(c.media.stats().packets_sent for c in live)
    await asyncio.to_thread(sink.send, "stop")
    rss1 = _rss_kib()
    digits = sum(len(c.digits) for c in live) / max(1, len(live))
    for c in live:
        await c.hangup()
    for p in players:
        p.cancel()
    await asyncio.gather(*(c.wait_ended(10) for c in live))
    await ua.close()
    raw = sink.recv()
    if recordings is not None:
        shutil.rmtree(recordings, ignore_errors=True)
    return Result("autocall", n, len(live), len(live) / setup,
                  (cpu1 - cpu0) / (w1 - w0) * 100 / max(1, len(live)),
                  (rss1 - rss0) / max(1, len(live)), stream_stats(raw), digits,
                  (sent1 - sent0) / (w1 - w0) / max(1, len(live)), amd=amd_load)


def _ours_worker(n: int, duration: float, sink: Connection | _Barrier, out: Connection,
                 priority: str, amd: bool = False, record: bool = False) -> None:
    """Our calls in a process of their own, so a raised priority stays with them."""
    from autocall.process import freeze_startup_heap, raise_priority

    applied = raise_priority(priority)
    freeze_startup_heap()  # as `autocall serve` and `campaign run` do before their calls
    result = asyncio.run(_ours(n, duration, sink, amd, record))
    result.priority = applied
    out.send(result)


def _run_ours(n: int, duration: float, sink: Connection, priority: str,
              amd: bool = False, workers: int = 1, record: bool = False) -> Result:
    """Our calls in ``workers`` processes (as ``campaign run --workers``), n split evenly;
    with several, the sink's start and stop wait for all of them (a barrier) and one
    result sums theirs: answered, CPU and memory per call over all calls."""
    pipes = [mp.Pipe() for _ in range(workers)]
    links = [mp.Pipe() if workers > 1 else (sink, sink) for _ in range(workers)]
    procs = [mp.Process(target=_ours_worker, args=(
        n // workers + (i < n % workers), duration,
        _Barrier(links[i][1]) if workers > 1 else sink, pipes[i][1], priority, amd, record),
        daemon=True) for i in range(workers)]
    for proc in procs:
        proc.start()
    try:
        raw = None
        if workers > 1:
            for phase in ("start", "stop"):
                for mine, _ in links:
                    if not mine.poll(duration + 180) or mine.recv() != phase:
                        raise RuntimeError(f"a worker did not reach {phase}")
                sink.send(phase)
                for mine, _ in links:
                    mine.send("go")
            raw = sink.recv()
            for mine, _ in links:
                mine.send((b"", b"", []))  # the streams are judged once, here
        results: list[Result] = []
        for parent, _ in pipes:
            if not parent.poll(duration + 180):
                raise RuntimeError("our calls did not finish")
            results.append(parent.recv())
        if raw is None:
            return results[0]
        live = sum(r.answered for r in results)
        per_call = [(r.answered, r) for r in results]
        setup = max(r.answered / r.setup_cps if r.setup_cps else 0.0 for r in results)
        return Result(
            f"autocall x{workers}", n, live, live / setup if setup else 0.0,
            sum(a * r.cpu_pct_per_call for a, r in per_call) / max(1, live),
            sum(a * r.mem_kib_per_call for a, r in per_call) / max(1, live),
            stream_stats(raw),
            sum(a * (r.digits_per_call or 0.0) for a, r in per_call) / max(1, live),
            sum(a * (r.sender_pps or 0.0) for a, r in per_call) / max(1, live),
            results[0].priority, amd=_amd_of([r.amd for r in results]))
    finally:
        for proc in procs:
            proc.join(20)
            if proc.is_alive():
                proc.kill()


def _amd_of(loads: list[AmdLoad | None]) -> AmdLoad | None:
    """The workers' AMD loads as one (sums, and per-call figures weighted by calls)."""
    got = [a for a in loads if a is not None]
    if not got:
        return None
    calls = sum(a.calls for a in got)
    decisions: dict[str, int] = {}
    for a in got:
        for k, v in a.decisions.items():
            decisions[k] = decisions.get(k, 0) + v
    return AmdLoad(calls, sum(a.active for a in got), dict(sorted(decisions.items())),
                   sum(a.frames_per_call_s * a.calls for a in got) / max(1, calls),
                   sum(a.calls_per_pass for a in got) / len(got))


class _Barrier:
    """A worker's stand-in for the sink: ``send("start"/"stop")`` returns once every
    worker has sent it and the sink got it; ``recv`` gets what the parent passes on."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send(self, message: str) -> None:
        self.conn.send(message)
        self.conn.recv()

    def recv(self) -> tuple[bytes, bytes, list[int]]:
        raw: tuple[bytes, bytes, list[int]] = self.conn.recv()
        return raw


# ---- pyVoIP baseline (its threads live in their own process) ------------------------------
def _pyvoip_worker(n: int, duration: float, conn: Connection, priority: str) -> None:
    import pyVoIP
    from pyVoIP.VoIP import CallState, VoIPPhone

    from autocall.process import raise_priority

    conn.send(("priority", raise_priority(priority)))

    pyVoIP.DEBUG = False
    phone = VoIPPhone("127.0.0.1", SIPP_PORT, "bench", "bench", myIP="127.0.0.1",
                      sipPort=PYVOIP_SIP_PORT, rtpPortLow=PYVOIP_RTP[0],
                      rtpPortHigh=PYVOIP_RTP[1])
    phone.start()
    pcm = _prompt(duration + 5)
    audio = ((pcm.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()  # its 8-bit PCM
    rss0 = _rss_kib()
    t0 = time.perf_counter()
    calls = []
    for _ in range(n):
        try:
            calls.append(phone.call("sipp"))
        except Exception as exc:  # noqa: BLE001 - a baseline failure is a result, not a crash
            print(f"pyVoIP call failed: {exc}", file=sys.stderr)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and any(c.state != CallState.ANSWERED for c in calls):
        time.sleep(0.05)
    setup = time.perf_counter() - t0
    live = [c for c in calls if c.state == CallState.ANSWERED]
    for c in live:
        c.write_audio(audio)
    time.sleep(SETTLE)
    conn.send(("measure", len(live), setup))
    cpu0, w0 = _cpu(), time.perf_counter()
    time.sleep(duration)
    cpu1, w1 = _cpu(), time.perf_counter()
    rss1 = _rss_kib()
    conn.send(("done", (cpu1 - cpu0) / (w1 - w0) * 100 / max(1, len(live)),
               (rss1 - rss0) / max(1, len(live))))
    for c in live:
        with contextlib.suppress(Exception):  # teardown of the baseline is best effort
            c.hangup()
    phone.stop()


def _pyvoip(n: int, duration: float, sink: Connection, priority: str) -> Result:
    parent, child = mp.Pipe()
    proc = mp.Process(target=_pyvoip_worker, args=(n, duration, child, priority), daemon=True)
    proc.start()
    try:
        _, applied = parent.recv()
        if not parent.poll(90):
            raise RuntimeError("pyVoIP did not set up its calls within 90 s")
        _, answered, setup = parent.recv()
        sink.send("start")
        if not parent.poll(duration + 60):
            raise RuntimeError("pyVoIP did not finish measuring")
        _, cpu, mem = parent.recv()
        sink.send("stop")
        raw = sink.recv()
    finally:
        proc.join(20)
        if proc.is_alive():
            proc.kill()
    return Result("pyVoIP 1.6.8", n, answered, answered / setup if setup else 0.0, cpu, mem,
                  stream_stats(raw), priority=applied)


def _c_caller(exe: Path, n: int, duration: float, sink: Connection, workers: int) -> Result:
    """``n`` streams from ``workers`` C caller processes through the sink (see `_CALLER_C`)."""
    procs = [subprocess.Popen([str(exe), "127.0.0.1", str(SINK_PORT),
                               str(n // workers + (i < n % workers))])
             for i in range(workers)]
    try:
        time.sleep(len(_burst()) * 0.02 + SETTLE)  # the sink's DTMF bursts, then echoes
        pids = [proc.pid for proc in procs]
        sink.send("start")
        cpu0, w0 = _cpu_of(pids), time.perf_counter()
        time.sleep(duration)
        cpu1, w1 = _cpu_of(pids), time.perf_counter()
        sink.send("stop")
        raw = sink.recv()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)
    return Result(f"C caller x{workers}", n, n, 0.0, (cpu1 - cpu0) / (w1 - w0) * 100 / n, 0.0,
                  stream_stats(raw))


# ---- orchestration -----------------------------------------------------------------------
def _start_sipp(n: int, workdir: Path) -> subprocess.Popen[bytes]:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    cmd = [sipp, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(SIPP_PORT),
           "-mi", "127.0.0.1", "-mp", str(SIPP_PORT + 4), "-key", "sink_port", str(SINK_PORT),
           "-m", str(n + 2), "-nostdin", "-timeout", "300s", "-max_socket", "4096"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def run(n: int, duration: float, which: str, echo: bool = False,
        priority: str = "normal", amd: bool = False,
        floor_streams: int = FLOOR_STREAMS, workers: int = 1, c_sink: bool = True,
        record: bool = False, greeting: float = 0.0) -> Result:
    work = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    sipp = _start_sipp(n, work)
    parent, child = mp.Pipe()
    exe = _build_c(work, "floor", _FLOOR_C) if floor_streams > 0 else None
    floor = (exe, floor_streams) if exe is not None else None
    sink_exe = _build_c(work, "sink", _SINK_C) if c_sink else None
    sink = mp.Process(
        target=_sink if sink_exe is None else functools.partial(_sink_c, sink_exe),
        args=(SINK_PORT, child, _burst(), echo, floor, greeting), daemon=True)
    sink.start()
    if not parent.poll(10):
        raise RuntimeError("the RTP sink did not start")
    parent.recv()
    try:
        if which == "ours":
            return _run_ours(n, duration, parent, priority, amd, workers, record)
        if which == "c":
            exe = _build_c(work, "caller", _CALLER_C)
            if exe is None:
                raise RuntimeError("no C compiler for the C caller")
            return _c_caller(exe, n, duration, parent, workers)
        return _pyvoip(n, duration, parent, priority)
    finally:
        sink.join(5)
        if sink.is_alive():
            sink.kill()
        sipp.terminate()
        try:
            sipp.wait(5)
        except subprocess.TimeoutExpired:
            sipp.kill()
        shutil.rmtree(work, ignore_errors=True)


def _row(r: Result) -> str:
    s = r.stats
    digits = f"{r.digits_per_call:.1f}" if r.digits_per_call is not None else "-"
    tx = f"{r.sender_pps:.2f}" if r.sender_pps is not None else "-"
    return (f"{r.name:<13} N={r.calls:<4} answered={r.answered:<4} "
            f"pps={s.pps_mean:6.2f} (min {s.pps_min:6.2f}, drift≤{s.worst_drift_pct:6.3f}%) "
            f"p99={s.p99_ms:6.1f} ms healthy={s.healthy:<4} "
            f"cpu/call={r.cpu_pct_per_call:5.2f}% mem/call={r.mem_kib_per_call:7.1f} KiB "
            f"calls/s={r.setup_cps:6.1f} digits/call={digits} sender-pps={tx} "
            f"priority={r.priority}\n"
            f"{'':<13} floor (C sender, {s.floor_streams} streams, same sink and run): "
            f"pps={s.floor_pps:6.2f} p99={s.floor_p99_ms:6.1f} ms -> healthy means "
            f"rate within 0.1 % of 50/s and p99 ≤ {s.limit_ms:.1f} ms")


def _amd_row(a: AmdLoad) -> str:
    decisions = ", ".join(f"{k} {v}" for k, v in a.decisions.items()) or "none"
    return (
        f"{'':<13} AMD listening at the window's end on {a.active}/{a.calls} calls; "
        f"{a.frames_per_call_s:.1f} frames analysed per call per second (50: all), "
        f"{a.calls_per_pass:.1f} per bank pass; analyses: {decisions}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--baseline-calls", type=int, nargs="+", default=None,
                    help="run pyVoIP only at these of the --calls (default: at every N); "
                    "pyVoIP's pacing gives out long before 1,000 calls, so the issue's "
                    "baseline is 100 and 200 beside ours at 1,000 in one run")
    ap.add_argument("--amd", action="store_true",
                    help="our calls also run answering-machine detection on what they "
                    "receive, all through the window (see the module's docstring)")
    ap.add_argument("--far-end", choices=("burst", "echo", "greeting"), default="burst",
                    help="burst: the far end sends in-band DTMF at the start, then silence "
                    "(no packets); echo: it then streams back every packet it gets, so each "
                    "call also receives 50 packets/s; greeting: it echoes for "
                    f"{GREETING:g} s and then streams silence back (a callee who spoke, "
                    "then listens)")
    ap.add_argument("--priority", choices=("normal", "high", "realtime"), default="normal",
                    help="scheduling priority of the calling process, ours and the baseline "
                    "alike (autocall --priority)")
    ap.add_argument("--floor-streams", type=int, default=FLOOR_STREAMS,
                    help="streams of the C floor sender run through the same sink while "
                    "each row is measured (0: no floor, fixed 22 ms p99 rule)")
    ap.add_argument("--workers", type=int, default=1,
                    help="our calls in this many processes (campaign run --workers), the "
                    "calls split evenly; pyVoIP stays one process")
    ap.add_argument("--record", action="store_true",
                    help="every one of our calls records both directions to a stereo WAV "
                    "(as a campaign with recording: true), in a temporary folder")
    ap.add_argument("--sink", choices=("c", "python"), default="c",
                    help="the measuring sink (and echoing far end): c, built here with cc "
                    "(falls back to python without one), or the python loop, which takes "
                    "CPU from the calls under test on the same cores")
    ap.add_argument("--c-caller", action="store_true",
                    help="after our row, the same N streams from a C caller that only sends "
                    "and reads one packet per call-frame (no SIP, no detection), through the "
                    "same sink and rule, in --workers processes: what this machine allows")
    args = ap.parse_args()
    echo = args.far_end in ("echo", "greeting")
    greeting = GREETING if args.far_end == "greeting" else 0.0
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(other processes skew pacing: compare rows of the same run); "
          f"far end: {args.far_end}; priority asked: {args.priority}; sink: {args.sink}; "
          f"recording: {'on' if args.record else 'off'}",
          flush=True)
    for n in args.calls:
        ours = run(n, args.duration, "ours", echo, args.priority, args.amd,
                   args.floor_streams, args.workers, args.sink == "c", args.record, greeting)
        print(_row(ours), flush=True)
        if ours.amd is not None:
            print(_amd_row(ours.amd), flush=True)
        if args.c_caller:
            ideal = run(n, args.duration, "c", echo, floor_streams=args.floor_streams,
                        workers=args.workers, greeting=greeting)
            print(_row(ideal), flush=True)
        if args.skip_baseline or (
            args.baseline_calls is not None and n not in args.baseline_calls
        ):
            continue
        try:
            base = run(n, args.duration, "pyvoip", echo, args.priority,
                       floor_streams=args.floor_streams, c_sink=args.sink == "c",
                       greeting=greeting)
        except RuntimeError as exc:  # the baseline failing at this N is itself the result
            print(f"pyVoIP 1.6.8  N={n:<4} failed: {exc}", flush=True)
            continue
        print(_row(base), flush=True)
        b, o = base.stats, ours.stats
        if b.pps_mean and b.p99_ms:
            print(f"  ratio ours/pyVoIP: pps {o.pps_mean / b.pps_mean:.3f}, "
                  f"p99 {o.p99_ms / b.p99_ms:.3f}, healthy {o.healthy}/{b.healthy}, "
                  f"cpu/call {ours.cpu_pct_per_call / max(base.cpu_pct_per_call, 1e-9):.2f}, "
                  f"calls/s {ours.setup_cps / max(base.setup_cps, 1e-9):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
