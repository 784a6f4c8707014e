// Package lint holds repository-wide checks that run as tests (go test
// ./tools/lint): rules of the house that the compiler does not enforce.
// It has no code of its own and nothing imports it.
package lint
