"""A small authoritative DNS server on 127.0.0.1 for the tests, built on dnspython's
message codec: answers from a zone given as text, counts the questions it gets, and can
be told to stay silent (a dead server)."""

from __future__ import annotations

import socket
import threading
from collections import Counter

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone


class DnsServer:
    def __init__(self, zone_text: str, origin: str, port: int = 0) -> None:
        self.zone = dns.zone.from_text(zone_text, origin=origin, relativize=False)
        self.origin = dns.name.from_text(origin)
        self.asked: Counter[tuple[str, str]] = Counter()
        self.silent = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.address: tuple[str, int] = self.sock.getsockname()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        self.asked[(question.name.to_text(omit_final_dot=True).lower(),
                    dns.rdatatype.to_text(question.rdtype))] += 1
        node = self.zone.get_node(question.name)
        soa = self.zone.find_rrset(self.origin, dns.rdatatype.SOA)
        if node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(soa)
            return response
        rdataset = node.get_rdataset(dns.rdataclass.IN, question.rdtype)
        if rdataset is None:
            response.authority.append(soa)  # NOERROR, no data (RFC 2308 §2.2)
            return response
        rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, question.rdtype)
        rrset.update(rdataset)
        response.answer.append(rrset)
        return response

    def _serve(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(4096)
            except OSError:
                return
            if self.silent:
                continue
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - a test server ignores garbage
                continue
            self.sock.sendto(self._answer(query).to_wire(), source)

    def close(self) -> None:
        self.sock.close()
