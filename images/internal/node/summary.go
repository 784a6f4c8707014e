package node

import (
	"fmt"
	"strings"
)

// LayerSummary describes each configured IPCP in one line for a boot
// banner: layer, kind, name and its addresses as configured (the board
// NIC's MAC is the image's to add).
func LayerSummary(cfg *Config) []string {
	var out []string
	for _, p := range cfg.IPCPs {
		var where []string
		switch p.Kind {
		case "eth":
			var c ethConfig
			if cfg.decode(p.Eth, &c) == nil {
				switch {
				case c.Board == "usb":
					where = append(where, "board USB Ethernet")
				case c.Board != "":
					where = append(where, "board NIC")
				case c.Interface != "":
					where = append(where, "interface "+c.Interface)
				case c.QEMUConnect != "":
					where = append(where, "qemu stream to "+c.QEMUConnect)
				case c.QEMUListen != "":
					where = append(where, "qemu stream on "+c.QEMUListen)
				}
			}
		case "udp":
			var c udpConfig
			if cfg.decode(p.UDP, &c) == nil {
				if c.Addr != "" {
					where = append(where, "udp "+c.Addr)
				}
				if ns := c.Netstack; ns != nil {
					dev := "board NIC"
					switch {
					case ns.Board == "usb":
						dev = "board USB Ethernet"
					case ns.QEMUConnect != "":
						dev = "qemu stream to " + ns.QEMUConnect
					case ns.QEMUListen != "":
						dev = "qemu stream on " + ns.QEMUListen
					}
					where = append(where, fmt.Sprintf("netstack %s on %s", strings.Join(ns.Addrs, " "), dev))
				}
			}
		}
		line := fmt.Sprintf("layer %s: %s ipcp %s", p.Layer, p.Kind, p.Name)
		if len(where) > 0 {
			line += " (" + strings.Join(where, ", ") + ")"
		}
		out = append(out, line)
	}
	for _, a := range cfg.Apps {
		name := a.Name
		if name == "" {
			name = a.Kind
		}
		out = append(out, fmt.Sprintf("app %s: %s", name, a.Kind))
	}
	return out
}
