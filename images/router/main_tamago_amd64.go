//go:build tamago && amd64

package main

import "github.com/ouronet/ouro/board/qemu/microvm"

// QEMU's microvm machine under TCG (board/qemu/microvm).
type board = microvm.Board

const boardPrefix = "microvm"

func boardExit(code int) { microvm.Exit(code) }
