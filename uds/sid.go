package uds

import "fmt"

// SID is a service identifier: the first byte of a request. A positive
// response starts with SID+0x40, a negative one with 7F SID.
type SID byte

// The services this package's client speaks and its server framework
// knows by name (ISO 14229-1:2020 table 23 has them all).
const (
	DiagnosticSessionControl       SID = 0x10
	ECUReset                       SID = 0x11
	ClearDiagnosticInformation     SID = 0x14
	ReadDTCInformation             SID = 0x19
	ReadDataByIdentifier           SID = 0x22
	ReadMemoryByAddress            SID = 0x23
	SecurityAccess                 SID = 0x27
	CommunicationControl           SID = 0x28
	WriteDataByIdentifier          SID = 0x2E
	InputOutputControlByIdentifier SID = 0x2F
	RoutineControl                 SID = 0x31
	RequestDownload                SID = 0x34
	RequestUpload                  SID = 0x35
	TransferData                   SID = 0x36
	RequestTransferExit            SID = 0x37
	WriteMemoryByAddress           SID = 0x3D
	TesterPresent                  SID = 0x3E
	ControlDTCSetting              SID = 0x85
)

// NegativeResponseSID starts every negative response: 7F <SID> <NRC>.
const NegativeResponseSID = 0x7F

// SuppressPositiveResponse is the suppressPosRspMsgIndicationBit of a
// sub-function byte. Or it into the sub-function argument of a client
// method (uds.ExtendedSession|uds.SuppressPositiveResponse) to ask the
// ECU not to answer a success; the method then returns zero values.
const SuppressPositiveResponse = 0x80

var sidNames = map[SID]string{
	DiagnosticSessionControl:       "DiagnosticSessionControl",
	ECUReset:                       "ECUReset",
	ClearDiagnosticInformation:     "ClearDiagnosticInformation",
	ReadDTCInformation:             "ReadDTCInformation",
	ReadDataByIdentifier:           "ReadDataByIdentifier",
	ReadMemoryByAddress:            "ReadMemoryByAddress",
	SecurityAccess:                 "SecurityAccess",
	CommunicationControl:           "CommunicationControl",
	WriteDataByIdentifier:          "WriteDataByIdentifier",
	InputOutputControlByIdentifier: "InputOutputControlByIdentifier",
	RoutineControl:                 "RoutineControl",
	RequestDownload:                "RequestDownload",
	RequestUpload:                  "RequestUpload",
	TransferData:                   "TransferData",
	RequestTransferExit:            "RequestTransferExit",
	WriteMemoryByAddress:           "WriteMemoryByAddress",
	TesterPresent:                  "TesterPresent",
	ControlDTCSetting:              "ControlDTCSetting",
}

// subFunctionServices are the services whose second byte is a
// sub-function with the suppressPosRspMsgIndicationBit.
var subFunctionServices = map[SID]bool{
	DiagnosticSessionControl: true,
	ECUReset:                 true,
	ReadDTCInformation:       true,
	SecurityAccess:           true,
	CommunicationControl:     true,
	RoutineControl:           true,
	TesterPresent:            true,
	ControlDTCSetting:        true,
}

// HasSubFunction reports whether the service's second byte is a
// sub-function (ISO 14229-1 marks these services "SF: yes").
func (s SID) HasSubFunction() bool { return subFunctionServices[s] }

// String returns the service's name and identifier:
// "SecurityAccess (0x27)".
func (s SID) String() string {
	if n, ok := sidNames[s]; ok {
		return fmt.Sprintf("%s (0x%02X)", n, byte(s))
	}
	return fmt.Sprintf("service 0x%02X", byte(s))
}

// Session is a diagnostic session type, the sub-function of
// DiagnosticSessionControl.
type Session byte

// The sessions of ISO 14229-1.
const (
	DefaultSession                Session = 0x01
	ProgrammingSession            Session = 0x02
	ExtendedSession               Session = 0x03
	SafetySystemDiagnosticSession Session = 0x04
)

// String returns the session's name: "default", "programming", ...
func (s Session) String() string {
	switch s {
	case DefaultSession:
		return "default"
	case ProgrammingSession:
		return "programming"
	case ExtendedSession:
		return "extended"
	case SafetySystemDiagnosticSession:
		return "safetySystem"
	}
	return fmt.Sprintf("session 0x%02X", byte(s))
}

// The ECUReset reset types.
const (
	HardReset                 byte = 0x01
	KeyOffOnReset             byte = 0x02
	SoftReset                 byte = 0x03
	EnableRapidPowerShutDown  byte = 0x04
	DisableRapidPowerShutDown byte = 0x05
)

// The RoutineControl types.
const (
	StartRoutine          byte = 0x01
	StopRoutine           byte = 0x02
	RequestRoutineResults byte = 0x03
)

// The CommunicationControl control types and communication types.
const (
	EnableRxAndTx                          byte = 0x00
	EnableRxAndDisableTx                   byte = 0x01
	DisableRxAndEnableTx                   byte = 0x02
	DisableRxAndTx                         byte = 0x03
	NormalCommunicationMessages            byte = 0x01
	NetworkManagementCommunicationMessages byte = 0x02
)

// The ControlDTCSetting types.
const (
	DTCSettingOn  byte = 0x01
	DTCSettingOff byte = 0x02
)

// ReportDTCByStatusMask is the ReadDTCInformation sub-function the client
// decodes.
const ReportDTCByStatusMask byte = 0x02

// AllDTCGroups is the groupOfDTC that clears every DTC (0xFFFFFF).
const AllDTCGroups uint32 = 0xFFFFFF
