package kvwarden

import "context"

// bearerToken adds `authorization: Bearer TOKEN` to every call (docs/clients.md).
type bearerToken string

func (token bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(token)}, nil
}

// RequireTransportSecurity is false: a pod-local sidecar on loopback is commonly reached without TLS.
func (bearerToken) RequireTransportSecurity() bool { return false }
