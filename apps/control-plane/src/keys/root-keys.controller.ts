import { Controller, Delete, Get, HttpCode, Inject, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Audited, Requires } from '../auth/auth.decorators.js';
import { ApiProblems } from '../common/api-problems.js';
import { KeyCustodyError, KeyCustodyErrorCode } from './keys.errors.js';
import { RootKeyRotationService } from './root-key-rotation.service.js';
import { RootKeyInfoView, RootKeyList, RootKeyRotationView } from './root-keys.dto.js';
import { RootKeyService } from './root-keys.service.js';

/** A root key version in a path: a positive int4, so nothing out of the column's range reaches PostgreSQL. */
function rootKeyVersion(raw: string): number {
  if (!/^[1-9]\d{0,9}$/.test(raw) || Number(raw) > 2 ** 31 - 1)
    throw new KeyCustodyError(KeyCustodyErrorCode.InvalidRootKeyVersion, 'version must be a positive integer');
  return Number(raw);
}

/** Admin operations on the HSM root keys: list, rotate (re-wrapping everything under the new one), destroy a retired one. */
@ApiTags('root-keys')
@ApiBearerAuth()
@ApiProblems()
@Controller('root-keys')
export class RootKeysController {
  constructor(
    @Inject(RootKeyService) private readonly rootKeys: RootKeyService,
    @Inject(RootKeyRotationService) private readonly rotations: RootKeyRotationService,
  ) {}

  @Get()
  @Requires('root-keys:manage')
  @ApiOperation({ summary: 'The root key versions, their state and how many stored keys each still wraps (admin)' })
  @ApiOkResponse({ type: RootKeyList })
  async list(): Promise<RootKeyList> {
    return { items: (await this.rootKeys.list()).map((k) => RootKeyInfoView.of(k)) };
  }

  @Post('rotations')
  @Requires('root-keys:manage')
  @Audited('root-key.rotate')
  @ApiOperation({
    summary:
      'Rotate the root key (admin): a new version becomes active at once, then every stored data and delivery key is re-wrapped under it in the background',
  })
  @ApiCreatedResponse({ type: RootKeyRotationView })
  async rotate(): Promise<RootKeyRotationView> {
    return RootKeyRotationView.of(await this.rotations.start());
  }

  @Get('rotations/:rotation')
  @Requires('root-keys:manage')
  @ApiOperation({ summary: 'Progress of a root key rotation (admin)' })
  @ApiOkResponse({ type: RootKeyRotationView })
  async rotation(@Param('rotation', new ParseUUIDPipe()) id: string): Promise<RootKeyRotationView> {
    const r = await this.rotations.status(id);
    if (!r) throw new KeyCustodyError(KeyCustodyErrorCode.RotationNotFound, 'root key rotation not found');
    return RootKeyRotationView.of(r);
  }

  @Delete(':version')
  @HttpCode(204)
  @Requires('root-keys:manage')
  @Audited('root-key.destroy')
  @ApiOperation({ summary: 'Destroy a retired root key in the HSM once nothing is wrapped under it (admin; irreversible)' })
  @ApiNoContentResponse({ description: 'destroyed' })
  async destroy(@Param('version') version: string): Promise<void> {
    await this.rootKeys.destroy(rootKeyVersion(version));
  }
}
