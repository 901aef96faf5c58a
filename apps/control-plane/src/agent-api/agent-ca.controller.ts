import { createHash } from 'node:crypto';
import { Controller, Get, Inject } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { derToPem } from '@sigil/agent-protocol';
import { Public } from '../common/public-route.js';
import { RuntimeConfig } from '../config/runtime-config.js';
import { ClusterCertificateAuthority } from '../enrollment/cluster-ca.service.js';

export class AgentTrustView {
  @ApiProperty({ description: 'PEM of the cluster CA: agents verify the gRPC server with it, and it signs their certificates' })
  caCertificatePem!: string;
  @ApiProperty({ example: '3f1c…', description: 'SHA-256 of the CA certificate (DER), hex, to compare out of band' })
  sha256!: string;
  @ApiProperty({
    example: 'sigil.example.com:8443',
    description: 'where agents dial the gRPC endpoint: the first of its server names (SIGIL_GRPC_SERVER_NAMES) and its port',
  })
  grpcAddress!: string;
}

/** What an agent installation needs to trust the control plane. Public: it is a certificate. */
@ApiTags('agents')
@Public()
@Controller('agents')
export class AgentCaController {
  constructor(
    @Inject(ClusterCertificateAuthority) private readonly ca: ClusterCertificateAuthority,
    @Inject(RuntimeConfig) private readonly config: RuntimeConfig,
  ) {}

  @Get('trust')
  @ApiOperation({ summary: 'The CA bundle agents trust for the gRPC endpoint' })
  @ApiOkResponse({ type: AgentTrustView })
  async trust(): Promise<AgentTrustView> {
    const der = Buffer.from((await this.ca.certificate()).rawData);
    return {
      caCertificatePem: derToPem(der, 'CERTIFICATE'),
      sha256: createHash('sha256').update(der).digest('hex'),
      grpcAddress: `${this.config.grpc.serverNames[0] ?? 'localhost'}:${this.config.grpc.port}`,
    };
  }
}
