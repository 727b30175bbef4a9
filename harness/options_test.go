package harness

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTimeoutSetOnlyWhenTheUserChoseIt(t *testing.T) {
	o, err := newOptions(defaultOptions(), nil)
	require.NoError(t, err)
	require.False(t, o.timeoutSet[StageSSH], "the default is not the user's choice")
	o, err = newOptions(defaultOptions(), []Option{WithTimeout(StageSSH, defaultSSHTimeout)})
	require.NoError(t, err)
	require.True(t, o.timeoutSet[StageSSH], "even when it equals the default")
	require.False(t, o.timeoutSet[StageKernel])
}
