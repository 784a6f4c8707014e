package probe

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a probe loop outlives its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
