import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsString, MaxLength } from 'class-validator';
import { IsAbsentOr, IsDns1123Label } from '../common/validators.js';
import type { ProjectEntity } from './project.entity.js';

export class CreateProjectDto {
  @ApiProperty({ example: 'payments', description: 'DNS-1123 label, unique' })
  @IsDns1123Label()
  name!: string;

  @ApiPropertyOptional({ example: 'Payment services' })
  @IsAbsentOr()
  @IsString()
  @MaxLength(1000)
  description?: string;
}

export class UpdateProjectDto {
  @ApiPropertyOptional({ example: 'Payment services (EU)' })
  @IsAbsentOr()
  @IsString()
  @MaxLength(1000)
  description?: string;
}

export class ProjectView {
  @ApiProperty({ example: '7c9e6679-7425-40de-944b-e07fc1f90ae7' }) id!: string;
  @ApiProperty({ example: 'payments' }) name!: string;
  @ApiProperty({ example: 'Payment services' }) description!: string;
  @ApiProperty({ example: 1 }) version!: number;
  @ApiProperty() createdAt!: Date;
  @ApiProperty() updatedAt!: Date;

  static of(p: ProjectEntity): ProjectView {
    return { id: p.id, name: p.name, description: p.description, version: p.version, createdAt: p.createdAt, updatedAt: p.updatedAt };
  }
}

export class ProjectPage {
  @ApiProperty({ type: [ProjectView] }) items!: ProjectView[];
  @ApiProperty({ nullable: true, type: String, example: null }) next!: string | null;
}

export class ProjectNamespacesDto {
  @ApiProperty({
    type: [String],
    example: ['shop', 'shop-canary'],
    description:
      'the complete set of Kubernetes namespaces the project holds (DNS-1123 labels, at most 100); each namespace has one project',
  })
  @IsArray()
  @ArrayMaxSize(100)
  @IsDns1123Label({ each: true })
  namespaces!: string[];
}

export class ProjectNamespacesView {
  @ApiProperty({ example: 'payments' }) project!: string;
  @ApiProperty({ type: [String], example: ['shop', 'shop-canary'] }) namespaces!: string[];
}
