package main

import "github.com/ouronet/ouro/flow/ipnet"

type tunDev struct{ *ipnet.TUN }

func (t tunDev) name() string { return t.Name }

func openTUN(name string, mtu int) (tunDev, error) {
	t, err := ipnet.OpenTUN(name, mtu)
	return tunDev{t}, err
}
