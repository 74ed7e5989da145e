package sim

import (
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"go.uber.org/zap"
)

func zapSID(sid byte) zap.Field             { return zap.Stringer("service", uds.SID(sid)) }
func zapNRC(code byte) zap.Field            { return zap.String("nrc", uds.NRC(code).Error()) }
func zapDuration(d time.Duration) zap.Field { return zap.Duration("duration", d) }
