//go:build tamago && arm

package main

import "github.com/ouronet/ouro/board/usbarmory"

// The USB armory Mk II and QEMU's mcimx6ul-evk (board/usbarmory).
type board = usbarmory.Board

const boardPrefix = "usbarmory"

func boardExit(code int) { usbarmory.Exit(code) }
